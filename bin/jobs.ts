// `outpost jobs …`: operations on the durable queues of a device database, from a shell on the
// device (SQLite in WAL mode lets this run beside the device process). A running device notices
// a redrive or a resume within its queue poll interval (1 s by default).
import { existsSync } from 'node:fs'
import { createQueueOps, ErrorCode, OutpostError, type Job, type JobState } from '../runtime/index.js'
import { createSqliteQueueStore, openDeviceDatabase } from '../runtime/stores/sqlite/index.js'

export const JOBS_HELP = `outpost jobs — operate the durable queues in a device database

Usage:
  outpost jobs queues --db FILE                 every queue: ready, delayed, leased, completed, dead, oldest age, paused
  outpost jobs status <job-id> --db FILE        one job, as stored
  outpost jobs dead <queue> --db FILE [--limit N]
                                                dead letters, oldest first, with why each died
  outpost jobs redrive <queue> [job-id…] --db FILE
                                                dead jobs (all, or those named) back to ready with fresh attempts
  outpost jobs purge <queue> <state> --db FILE  delete the queue's jobs in a state (ready, leased, completed, dead)
  outpost jobs pause <queue> --db FILE          stop handing out its jobs (running ones finish); kept across restarts
  outpost jobs resume <queue> --db FILE
  outpost jobs cancel <job-id> --db FILE        a ready or running job to the dead letters (reason cancelled)

A queue is named <service>/<queue>, as \`queues\` lists it. --json prints JSON instead of text.
`

const STATES: readonly JobState[] = ['ready', 'leased', 'completed', 'dead']

/** What a job shows to an operator (payloads and outputs as JSON). */
function describe(job: Job): Record<string, unknown> {
  const at = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : new Date(ms).toISOString())
  return {
    id: job.id, queue: job.queue, state: job.state, attempt: job.attempt, priority: job.priority,
    runAt: at(job.runAt), leaseUntil: at(job.leaseUntil), createdAt: at(job.createdAt), updatedAt: at(job.updatedAt),
    idempotencyKey: job.idempotencyKey, correlationId: job.correlationId,
    deadReason: job.deadReason, errorCode: job.errorCode, error: job.error,
    payload: job.payload, output: job.output, progress: job.progress,
  }
}

/**
 * Runs one `outpost jobs` command and returns what to print.
 * @throws INVALID_CONFIG for a wrong call, NO_HANDLER for an unknown job or queue, STORE_* for the database
 */
export function runJobsCommand(args: string[], opts: { db?: string; limit?: string; json?: boolean }, now: () => number = Date.now): string {
  const [verb, ...rest] = args
  if (verb === undefined || verb === 'help') return JOBS_HELP
  if (opts.db === undefined) throw new OutpostError(ErrorCode.INVALID_CONFIG, 'name the device database with --db FILE')
  // Never create a database by mistake: an operator names an existing device's file.
  if (!existsSync(opts.db)) throw new OutpostError(ErrorCode.STORE_FAILED, `no device database at ${opts.db}`)
  const database = openDeviceDatabase({ path: opts.db, onCorrupt: 'fail' })
  try {
    const store = createSqliteQueueStore(database)
    const print = (value: unknown, text: () => string): string => (opts.json === true ? JSON.stringify(value, null, 2) : text())
    const queueArg = (): string => {
      const q = rest[0]
      if (q === undefined) throw new OutpostError(ErrorCode.INVALID_CONFIG, `outpost jobs ${verb} needs a queue (<service>/<queue>)`)
      if (!store.queues().includes(q)) throw new OutpostError(ErrorCode.NO_HANDLER, `no queue "${q}" in ${opts.db} (known: ${store.queues().join(', ') || 'none'})`)
      return q
    }
    const jobArg = (): Job => {
      const id = rest[0]
      const job = id === undefined ? undefined : store.get(id)
      if (job === undefined) throw new OutpostError(ErrorCode.NO_HANDLER, id === undefined ? `outpost jobs ${verb} needs a job id` : `no job ${id} in ${opts.db}`)
      return job
    }
    switch (verb) {
      case 'queues': {
        const rows = store.queues().map((q) => createQueueOps(store, q, now)).map((o) => ({ queue: o.key, ...o.metrics() }))
        return print(rows, () =>
          rows.length === 0
            ? 'no queues'
            : rows.map((r) => `${r.queue}${r.paused ? ' (paused)' : ''}: ready ${r.ready}, delayed ${r.delayed}, leased ${r.leased}, completed ${r.completed}, dead ${r.dead}, oldest ready ${Math.round(r.oldestReadyAgeMs / 1000)} s`).join('\n'),
        )
      }
      case 'status': {
        const job = describe(jobArg())
        return print(job, () => Object.entries(job).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join('\n'))
      }
      case 'dead': {
        const limit = Number(opts.limit ?? 100)
        const dead = createQueueOps(store, queueArg(), now).listDead(limit).map(describe)
        return print(dead, () => (dead.length === 0 ? 'no dead letters' : dead.map((d) => `${String(d.id)}  ${String(d.deadReason)}  ${String(d.errorCode ?? '')}  ${String(d.error ?? '')}  attempt ${String(d.attempt)}  ${JSON.stringify(d.payload)}`).join('\n')))
      }
      case 'redrive': {
        const ids = rest.slice(1)
        const n = createQueueOps(store, queueArg(), now).redrive(ids.length === 0 ? undefined : ids)
        return print({ redriven: n }, () => `${n} job${n === 1 ? '' : 's'} back to ready`)
      }
      case 'purge': {
        const q = queueArg()
        const state = rest[1] as JobState | undefined
        if (state === undefined || !STATES.includes(state)) throw new OutpostError(ErrorCode.INVALID_CONFIG, `outpost jobs purge ${q} needs a state: ${STATES.join(', ')}`)
        const n = createQueueOps(store, q, now).purge(state)
        return print({ purged: n }, () => `${n} ${state} job${n === 1 ? '' : 's'} deleted`)
      }
      case 'pause':
      case 'resume': {
        const ops = createQueueOps(store, queueArg(), now)
        if (verb === 'pause') ops.pause()
        else ops.resume()
        return print({ queue: ops.key, paused: verb === 'pause' }, () => `${ops.key} ${verb === 'pause' ? 'paused' : 'resumed'}`)
      }
      case 'cancel': {
        const job = jobArg()
        const after = createQueueOps(store, job.queue, now).cancel(job.id)!
        return print(describe(after), () => (after.deadReason === 'cancelled' ? `${job.id} cancelled` : `${job.id} is ${after.state}; nothing to cancel`))
      }
      default:
        throw new OutpostError(ErrorCode.INVALID_CONFIG, `unknown jobs command "${verb}"; see outpost jobs help`)
    }
  } finally {
    database.close()
  }
}
