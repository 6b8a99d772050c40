// `outpost jobs …`: operations on the durable queues of a device database, from a shell on the
// device (SQLite in WAL mode lets this run beside the device process). A running device notices
// a redrive or a resume within its queue poll interval (1 s by default). Inspection opens the file
// read-only; no command creates, moves or converts a file.
import { existsSync } from 'node:fs'
import { createQueueOps, ErrorCode, isOutpostError, OutpostError, type Job, type JobState } from '../runtime/index.js'
import { createSqliteQueueStore, openDeviceDatabase, type DeviceDatabase } from '../runtime/stores/sqlite/index.js'
import { meant } from './close-to.js'

export const JOBS_HELP = `outpost jobs — operate the durable queues in a device database

Usage:
  outpost jobs queues --db FILE                 every queue: ready, delayed, leased, completed, dead, oldest age, paused
  outpost jobs status <job-id> --db FILE        one job, as stored
  outpost jobs dead <queue> --db FILE [--limit N]
                                                dead letters, oldest first, with why each died
  outpost jobs redrive <queue> [job-id…] --db FILE
                                                dead jobs (all, or those named) back to ready with fresh attempts;
                                                a name that is no job of the queue changes nothing
  outpost jobs purge <queue> <state> --db FILE  delete the queue's jobs in a state (ready, leased, completed, dead)
  outpost jobs pause <queue> --db FILE          stop handing out its jobs (running ones finish); kept across restarts
  outpost jobs resume <queue> --db FILE
  outpost jobs cancel <job-id> --db FILE        a ready or running job to the dead letters (reason cancelled)

A queue is named <service>/<queue>, as \`queues\` lists it. --json prints JSON instead of text.
queues, status and dead open the database read-only; no command creates, moves or converts a file.
`

const STATES: readonly JobState[] = ['ready', 'leased', 'completed', 'dead']

/** What a job shows to an operator (payloads and outputs as JSON). */
function describe(job: Job): Record<string, unknown> {
  // A time no Date holds (a row an older version stored from a bad runAt) is shown as stored, not a crash.
  const at = (ms: number | undefined): string | undefined => {
    if (ms === undefined) return undefined
    const d = new Date(ms)
    return Number.isNaN(d.getTime()) ? `(not a time: ${String(ms).slice(0, 40)})` : d.toISOString()
  }
  return {
    id: job.id, queue: job.queue, state: job.state, attempt: job.attempt, priority: job.priority,
    runAt: at(job.runAt), leaseUntil: at(job.leaseUntil), createdAt: at(job.createdAt), updatedAt: at(job.updatedAt),
    idempotencyKey: job.idempotencyKey, correlationId: job.correlationId,
    deadReason: job.deadReason, errorCode: job.errorCode, error: job.error,
    payload: job.payload, output: job.output, progress: job.progress,
  }
}

/** Commands that only look: the database is opened read-only. */
const INSPECT = new Set(['queues', 'status', 'dead'])
/** Commands that change jobs or queues: read-write, but the file must already be a device database. */
const MUTATE = new Set(['redrive', 'purge', 'pause', 'resume', 'cancel'])

/**
 * Opens the database named by --db for `verb`, never creating, moving or converting a file: a
 * missing file is NOT_FOUND; an empty file, one that is not a database, or a database that is not
 * a device's, BAD_ARGUMENT.
 */
function openFor(verb: string, db: string): DeviceDatabase {
  try {
    return openDeviceDatabase({ path: db, access: INSPECT.has(verb) ? 'read' : 'tool' })
  } catch (err) {
    if (!isOutpostError(err)) throw err
    const details = (err.details ?? {}) as { missing?: boolean; notDevice?: boolean; directory?: boolean; reason?: string }
    if (details.missing === true) throw new OutpostError(ErrorCode.NOT_FOUND, `no device database at ${db} (--db names the file of a device, e.g. .outpost/thermo-1.db)`)
    if (details.directory === true) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `--db ${db} is a directory, not a device database (--db names the file of a device, e.g. .outpost/thermo-1.db); nothing was changed`, { cause: err })
    if (details.notDevice === true || err.code === ErrorCode.STORE_CORRUPT) {
      const why = details.notDevice === true ? details.reason : `SQLite: ${details.reason ?? err.message}`
      // A device's lock file is an SQLite file beside its database: point at the database.
      const lockOf = db.endsWith('.lock') && existsSync(db.slice(0, -'.lock'.length)) ? `; it looks like a device's lock file: the database is ${db.slice(0, -'.lock'.length)}` : ''
      throw new OutpostError(ErrorCode.BAD_ARGUMENT, `--db ${db} is not a device database (${why}${lockOf}); nothing was changed`, { cause: err })
    }
    throw err
  }
}

/**
 * Runs one `outpost jobs` command and returns what to print. Inspection commands (queues,
 * status, dead) open the database read-only; none of them creates, moves or converts a file.
 * @throws BAD_ARGUMENT for a wrong call (or --db naming a file that is not a device database),
 *   NOT_FOUND for a missing file or an unknown job or queue, STORE_* for the database
 */
export function runJobsCommand(args: string[], opts: { db?: string; limit?: string; json?: boolean }, now: () => number = Date.now): string {
  const [verb, ...rest] = args
  if (verb === undefined || verb === 'help') return JOBS_HELP
  if (!INSPECT.has(verb) && !MUTATE.has(verb)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `unknown jobs command "${verb}"${meant(verb, [...INSPECT, ...MUTATE])}; accepted: ${[...INSPECT, ...MUTATE].join(', ')}`)
  if (opts.db === undefined) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `outpost jobs ${verb} needs --db FILE (the device database)`)
  const limit = Number(opts.limit ?? 100)
  if (!Number.isInteger(limit) || limit < 1) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `--limit "${opts.limit}" is not accepted; expected a whole number from 1`)
  // Arguments are checked before the file is opened.
  const needs = (what: string): string => {
    const v = rest[0]
    if (v === undefined) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `outpost jobs ${verb} needs ${what}`)
    return v
  }
  if (verb === 'status' || verb === 'cancel') needs('a job id')
  else if (verb !== 'queues') needs('a queue (<service>/<queue>, as `outpost jobs queues` lists them)')
  if (verb === 'purge' && (rest[1] === undefined || !STATES.includes(rest[1] as JobState))) {
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, `outpost jobs purge ${rest[0]} needs a state: ${STATES.join(', ')}`)
  }
  // One job or queue per call (redrive names any number): a word more is a mistake, not ignored.
  const takes = verb === 'queues' ? 0 : verb === 'purge' ? 2 : verb === 'redrive' ? Infinity : 1
  if (rest.length > takes) {
    const extra = rest.slice(takes)
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, `outpost jobs ${verb} takes ${takes === 0 ? 'no argument' : takes === 1 ? `one ${verb === 'status' || verb === 'cancel' ? 'job id' : 'queue'}` : 'a queue and a state'} (got also "${extra.join(' ').slice(0, 200)}"); nothing was changed`)
  }
  const database = openFor(verb, opts.db)
  try {
    const store = createSqliteQueueStore(database)
    const print = (value: unknown, text: () => string): string => (opts.json === true ? JSON.stringify(value, null, 2) : text())
    const queueArg = (): string => {
      const q = rest[0]!
      if (!store.queues().includes(q)) throw new OutpostError(ErrorCode.NOT_FOUND, `no queue "${q}" in ${opts.db} (known: ${store.queues().join(', ') || 'none'})`)
      return q
    }
    const jobArg = (): Job => {
      const id = rest[0]!
      const job = store.get(id)
      if (job === undefined) throw new OutpostError(ErrorCode.NOT_FOUND, `no job ${id} in ${opts.db}`)
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
        const dead = createQueueOps(store, queueArg(), now).listDead(limit).map(describe)
        return print(dead, () => (dead.length === 0 ? 'no dead letters' : dead.map((d) => `${String(d.id)}  ${String(d.deadReason)}  ${String(d.errorCode ?? '')}  ${String(d.error ?? '')}  attempt ${String(d.attempt)}  ${JSON.stringify(d.payload)}`).join('\n')))
      }
      case 'redrive': {
        const q = queueArg()
        const ids = rest.slice(1)
        // Jobs named: each must be a job of this queue (a typo changes nothing and says so); one
        // that is not dead is named, not redriven.
        const found = ids.map((id) => ({ id, job: store.get(id) }))
        const missing = found.filter((f) => f.job === undefined || f.job.queue !== q).map((f) => f.id)
        if (missing.length > 0) throw new OutpostError(ErrorCode.NOT_FOUND, `no job ${missing.join(', ')} in queue ${q} of ${opts.db}; nothing was redriven`)
        const notDead = found.filter((f) => f.job!.state !== 'dead').map((f) => ({ id: f.id, state: f.job!.state }))
        const n = createQueueOps(store, q, now).redrive(ids.length === 0 ? undefined : ids)
        const skipped = notDead.map((d) => `; ${d.id} is ${d.state}, not dead`).join('')
        return print(ids.length === 0 ? { redriven: n } : { redriven: n, notDead }, () => `${n} job${n === 1 ? '' : 's'} back to ready${skipped}`)
      }
      case 'purge': {
        const q = queueArg()
        const state = rest[1] as JobState
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
        throw new OutpostError(ErrorCode.BAD_ARGUMENT, `unknown jobs command "${verb}"; see outpost jobs help`)
    }
  } finally {
    database.close()
  }
}
