import type { Logger } from 'pino'
import { ErrorCode, OutpostError, errorMessage, isOutpostError, type WireError } from '../errors.js'
import { createLogLimiter } from '../log-limiter.js'
import type { Clock } from '../ports/clock.js'
import type { Job, QueueStore } from '../ports/queue-store.js'
import { createClockSteps } from './clock-steps.js'
import { createLeaseSweep } from './lease-sweep.js'
import { abandon, abort, Active, giveBackRunOut, type Buffered, type QueueState, type Settled, type Settlement } from './runner-state.js'
import type { QueueRunStats, RunnerQueue, RunOutcome } from './runner-types.js'
import { createSettler } from './settle.js'

// The runner's seam with the service layer (outcomes, running jobs, declared queues, counters).
export type { QueueRunStats, ResultKind, RunnerQueue, RunningJob, RunOutcome } from './runner-types.js'

export interface QueueRunner {
  start(): void
  /** Jobs may be waiting in this queue (an enqueue, a redrive, a resume): look soon. */
  kick(key: string): void
  /** A job was cancelled: abort its worker if it runs here. */
  cancelled(id: string): void
  /**
   * Stops leasing; gives back jobs leased ahead; waits up to `graceMs` for running workers,
   * then aborts them and either releases their jobs (`release`) or leaves their leases to expire.
   */
  stop(opts: { graceMs: number; onShutdown: 'release' | 'expire' }): Promise<void>
  stats(): Record<string, QueueRunStats>
}

/** Retry a settlement that could not be stored after this long (the outbox was full, say). */
const SETTLE_RETRY_MS = 1_000
/** Shortest wait before looking at a queue again when nothing could be leased. */
const MIN_IDLE_MS = 25
/** `prefetch: 'auto'`: jobs that take less than this on average are leased ahead in numbers. */
const SHORT_JOB_MS = 5
const SHORT_JOB_PREFETCH = 128

/**
 * Runs the workers of a runtime's queues. Leases are taken in batches, and settlements
 * (complete / retry / dead-letter, with their result events) are group-committed: one
 * transaction per turn of the event loop settles every attempt that finished and leases the
 * next jobs. A worker slot frees as soon as its handler settles, so with `prefetch` one commit
 * covers many short jobs.
 */
export function createQueueRunner(opts: { store: QueueStore; clock: Clock; log: Logger; queues: RunnerQueue[]; afterCommit: () => void; pollMs?: number; random?: () => number }): QueueRunner {
  const { store, clock, log } = opts
  // Storage trouble that is retried (busy, full) recurs every poll or sweep: one line per kind a minute, with the count.
  const storeTrouble = createLogLimiter(log, { clock })
  const pollMs = opts.pollMs ?? 1_000
  const queues = new Map<string, QueueState>()
  for (const def of opts.queues) {
    queues.set(def.key, { def, avgMs: 1_000, active: new Set(), buffer: [], wanted: true, filling: false, stats: { started: 0, completed: 0, retried: 0, dead: 0, abandoned: 0, resultsFailed: 0 } })
  }
  const all = [...queues.values()]
  const settleOne = createSettler({ store, log, random: opts.random })
  const steps = createClockSteps({ store, clock, queues: all, notes: storeTrouble })
  const sweep = createLeaseSweep({
    store, clock, queues: all, storeTrouble, steps,
    release: (a, err) => {
      if (a.released || !a.q.active.has(a)) return
      a.released = true
      a.abandoned = true
      a.q.active.delete(a)
      pending.push({ q: a.q, job: a.job, outcome: { kind: 'retry', error: { code: err.code, message: err.message } } })
      fill(a.q)
      a.q.wanted = true
      schedule()
    },
  })
  let pending: Settlement[] = []
  let scheduled = false
  let started = false
  let stopping = false
  let stopped = false
  let cancelSettleRetry: (() => void) | undefined
  let onIdle: (() => void) | undefined

  /** Jobs this queue may hold (running plus leased ahead). */
  const capacity = (q: QueueState): number => {
    const p = q.def.policy
    const ahead = p.prefetch === 'auto' ? (q.avgMs < SHORT_JOB_MS ? Math.max(p.concurrency, SHORT_JOB_PREFETCH) : p.concurrency) : p.prefetch
    return p.concurrency + ahead
  }

  const schedule = (): void => {
    if (scheduled || stopped || !started) return
    scheduled = true
    setImmediate(tick)
  }

  // ---- one turn: settle what finished, lease what fits --------------------------------

  const tick = (): void => {
    scheduled = false
    if (stopped && pending.length === 0) return
    const now = clock.now()
    steps.check(now)
    const batch = pending
    pending = []
    let failed: Settlement[] = []
    let done: [QueueState, Settled][] = []
    let leased: [QueueState, Job[], number][] = []
    /** One commit: settle the batch, then lease. `isolated` gives each settlement a savepoint of its own. */
    const turn = (isolated: boolean): void =>
      store.transaction.run(() => {
        failed = []
        done = []
        leased = []
        steps.store(now) // before leasing: leases this runtime holds must not look run out after a step
        for (const s of batch) {
          if (!isolated) {
            done.push([s.q, settleOne(s, now)])
            continue
          }
          try {
            done.push([s.q, store.transaction.run(() => settleOne(s, now))])
          } catch (err) {
            const instead = unsendable(s, err)
            if (instead !== undefined) {
              try {
                done.push([s.q, store.transaction.run(() => settleOne(instead, now))])
                log.warn({ queue: s.q.def.key, jobId: s.job.id, code: (instead.outcome as { error: WireError }).error.code, err: errorMessage(err) }, 'job given up: its result cannot be sent')
                continue
              } catch {
                // Not stored either: tried again later, as below.
              }
            }
            failed.push(s)
            storeTrouble.warn('outcome-not-stored', { queue: s.q.def.key, jobId: s.job.id, err: errorMessage(err) }, 'job outcome not stored yet; trying again')
          }
        }
        if (stopping) return
        for (const q of all) {
          // Before a lease of run-out jobs could take them again as a new attempt.
          giveBackRunOut(q, now, store)
          if (!q.wanted) continue
          const room = capacity(q) - q.active.size - q.buffer.length
          if (room <= 0) continue
          leased.push([q, store.lease(q.def.key, room, now, q.def.policy.leaseMs), room])
        }
      })
    try {
      try {
        turn(false)
      } catch {
        // Something in the batch could not be stored (a result event the outbox refuses, say):
        // again, each settlement on its own, so the rest still commit.
        turn(true)
      }
    } catch (err) {
      storeTrouble.error('commit-failed', { err: errorMessage(err) }, 'queue store commit failed; trying again')
      pending = batch.concat(pending)
      return settleLater()
    }
    steps.committed()
    for (const [q] of leased) q.wanted = false
    if (failed.length > 0) {
      pending = failed.concat(pending)
      settleLater()
    }
    for (const [q, what] of done) {
      if (what === 'stale') q.stats.abandoned++
      else q.stats[what]++
    }
    if (batch.length > 0) opts.afterCommit()
    for (const [q, jobs, room] of leased) {
      for (const job of jobs) q.buffer.push({ job, renewedAt: now })
      fill(q)
      // Fewer jobs than asked for means nothing more is leasable now; otherwise the next freed slot looks again.
      if (jobs.length < room) idle(q, now)
    }
    if (stopping && pending.length === 0 && all.every((q) => q.active.size === 0)) onIdle?.()
  }

  /**
   * A completed job whose result event no receiver could take (a frame over the size limit, a
   * value that is not plain data) would fail the same way at every try, and hold its slot and
   * commit for ever: it is given up instead, with that error, and its small `dead` event goes out
   * in place of the result.
   */
  const unsendable = (s: Settlement, err: unknown): Settlement | undefined => {
    if (s.outcome.kind !== 'completed' || !(isOutpostError(err, ErrorCode.FRAME_TOO_LARGE) || isOutpostError(err, ErrorCode.INVALID_ENVELOPE))) return undefined
    return { ...s, outcome: { kind: 'fail', reason: 'failed', error: { code: err.code, message: `its result cannot be sent: ${err.message}` } } }
  }

  const settleLater = (): void => {
    if (cancelSettleRetry !== undefined || stopped) return
    cancelSettleRetry = clock.setTimer(clock.now() + SETTLE_RETRY_MS, () => {
      cancelSettleRetry = undefined
      schedule()
    })
  }

  /** Nothing (more) to lease now: look again when the next job is due, or after `pollMs` (another process may enqueue, redrive or resume). */
  const idle = (q: QueueState, now: number): void => {
    q.cancelTimer?.()
    let due: number | undefined
    try {
      due = store.isPaused(q.def.key) ? undefined : store.nextDueAt(q.def.key)
    } catch (err) {
      // Storage cannot be read just now (busy, say): look again after the poll interval. This
      // runs in a turn of the event loop; a throw would end the process.
      storeTrouble.warn(`not-readable:${q.def.key}`, { queue: q.def.key, err: errorMessage(err) }, 'queue state not readable; looking again later')
    }
    const wait = due === undefined ? pollMs : Math.min(pollMs, Math.max(MIN_IDLE_MS, due - now))
    q.cancelTimer = clock.setTimer(now + wait, () => {
      q.cancelTimer = undefined
      q.wanted = true
      schedule()
    })
  }

  // ---- running ------------------------------------------------------------------------

  /** Starts buffered jobs while worker slots are free. */
  const fill = (q: QueueState): void => {
    // A worker that returns at once finishes inside begin(), and its finish frees a slot: this
    // loop fills it, not a fill of its own one level deeper (a buffer of 136 short jobs would
    // otherwise run 136 calls deep).
    if (q.filling) return
    q.filling = true
    try {
      while (!stopping && q.active.size < q.def.policy.concurrency && q.buffer.length > 0) {
        // Its lease ran out while it waited (the process stood still): not run on a lease it no
        // longer holds, but given back at the next turn (giveBackRunOut) and leased again there.
        // (A step of the clock, not known yet, looks like that too: taken into account first.)
        const now = clock.now()
        if (q.buffer[0]!.job.leaseUntil! <= now && (steps.check(now), q.buffer[0]!.job.leaseUntil! <= now)) {
          q.wanted = true
          return schedule()
        }
        begin(q, q.buffer.shift()!)
      }
    } finally {
      q.filling = false
    }
  }

  const begin = (q: QueueState, b: Buffered): void => {
    const job = b.job
    if (job.attempt > q.def.policy.maxAttempts) {
      // Taken again after its lease ran out more often than it may be tried: the process
      // running it died or froze each time. Do not run it once more.
      const error = { code: ErrorCode.LEASE_LOST, message: `lost its lease on each of ${job.attempt - 1} attempts (the device died or froze while running it)` }
      pending.push({ q, job, outcome: { kind: 'fail', error, reason: 'attempts' } })
      return schedule()
    }
    const now = clock.now()
    const a = new Active(q, job, now, performance.now(), b.renewedAt, job.leaseUntil!, heartbeat)
    q.active.add(a)
    q.stats.started++
    let run: RunOutcome | Promise<RunOutcome>
    try {
      run = q.def.run(a)
    } catch (err) {
      run = internal(err)
    }
    // A worker that returned a value has finished already: settled now, with no promise between.
    if (!(run instanceof Promise)) return finished(a, run)
    run.then(
      (outcome) => finished(a, outcome),
      (err: unknown) => finished(a, internal(err)),
    )
  }
  /** What a run that threw or rejected (it should not) comes to: tried again. */
  const internal = (err: unknown): RunOutcome => ({ kind: 'retry', error: { code: ErrorCode.INTERNAL, message: errorMessage(err) } })

  const finished = (a: Active, outcome: RunOutcome): void => {
    // Given back by the sweep already (it timed out and did not return): settled as a timeout then.
    if (a.released) return
    const q = a.q
    q.active.delete(a)
    q.avgMs = q.avgMs * 0.9 + (performance.now() - a.began) * 0.1
    if (a.abandoned) {
      q.stats.abandoned++
    } else if (a.stopping && outcome.kind !== 'completed') {
      // Interrupted by shutdown: not the job's fault, not an attempt.
      q.stats.abandoned++
      try {
        store.release(a.job.id, a.job.attempt, clock.now())
      } catch (err) {
        log.warn({ jobId: a.job.id, err: errorMessage(err) }, 'job not released; its lease will expire')
      }
    } else {
      const timeout = a.timedOut && outcome.kind === 'completed'
      pending.push({ q, job: a.job, outcome: timeout ? { kind: 'retry', error: { code: ErrorCode.TIMEOUT, message: `attempt ran past its ${q.def.policy.timeoutMs} ms timeout` } } : outcome })
    }
    fill(q)
    q.wanted = true // a slot is free: the next turn leases for it
    schedule()
  }

  const heartbeat = (a: Active, progress: unknown): boolean => {
    if (a.abandoned) return false
    const now = clock.now()
    steps.check(now)
    const policy = a.q.def.policy
    let ok = false
    try {
      store.transaction.run(() => {
        steps.store(now)
        ok = store.heartbeat(a.job.id, a.job.attempt, now, policy.leaseMs, progress)
        if (!ok || progress === undefined || !a.q.def.reportsProgress) return
        try {
          a.q.def.result('progress', { jobId: a.job.id, queue: a.q.def.name, attempt: a.job.attempt, progress }, a.job)
        } catch (err) {
          // Progress is a hint: a report that cannot be stored does not cost the lease.
          a.q.stats.resultsFailed++
          log.warn({ jobId: a.job.id, err: errorMessage(err) }, 'progress event not stored')
        }
      })
    } catch (err) {
      log.warn({ jobId: a.job.id, err: errorMessage(err) }, 'heartbeat not stored')
      return true // the lease still runs until leaseUntil; the sweep will try again
    }
    steps.committed()
    if (!ok) {
      abandon(a, new OutpostError(ErrorCode.LEASE_LOST, `job ${a.job.id} lost its lease`))
      return false
    }
    a.renewedAt = now
    a.leaseUntil = now + policy.leaseMs
    if (progress !== undefined) opts.afterCommit()
    return true
  }

  return {
    start() {
      if (started || all.length === 0) return
      started = true
      sweep.start()
      schedule()
    },
    kick(key) {
      const q = queues.get(key)
      if (q === undefined) return
      q.wanted = true
      schedule()
    },
    cancelled(id) {
      for (const q of all) {
        for (const a of q.active) if (a.job.id === id) abandon(a, new OutpostError(ErrorCode.CANCELLED, `job ${id} was cancelled`))
        q.buffer = q.buffer.filter((b) => b.job.id !== id)
      }
    },
    async stop({ graceMs, onShutdown }) {
      if (stopping || !started) return
      stopping = true
      for (const q of all) q.cancelTimer?.()
      const now = clock.now()
      try {
        store.transaction.run(() => {
          for (const q of all) for (const b of q.buffer.splice(0)) store.release(b.job.id, b.job.attempt, now)
        })
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'jobs leased ahead not released; their leases will expire')
      }
      const busy = (): boolean => pending.length > 0 || all.some((q) => q.active.size > 0)
      const waitIdle = (ms: number): Promise<void> =>
        busy()
          ? new Promise<void>((resolve) => {
              const t = setTimeout(resolve, ms)
              onIdle = () => {
                clearTimeout(t)
                resolve()
              }
              schedule()
            })
          : Promise.resolve()
      await waitIdle(graceMs)
      const left = all.flatMap((q) => [...q.active])
      for (const a of left) {
        a.stopping = true
        abort(a, new OutpostError(ErrorCode.CANCELLED, 'runtime is stopping'))
      }
      if (left.length > 0) await waitIdle(Math.min(graceMs, 1_000))
      // Workers that ignore their signal: give the job back now, or let its lease run out.
      const stuck = all.flatMap((q) => [...q.active])
      try {
        store.transaction.run(() => {
          for (const a of stuck) {
            a.abandoned = true
            if (onShutdown === 'release') store.release(a.job.id, a.job.attempt, clock.now())
          }
        })
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'running jobs not released; their leases will expire')
      }
      tick() // settle whatever finished
      stopped = true
      sweep.stop()
      cancelSettleRetry?.()
    },
    stats: () => Object.fromEntries(all.map((q) => [q.def.key, { ...q.stats }])),
  }
}
