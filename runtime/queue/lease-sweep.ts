import type { LogLimiter } from '../log-limiter.js'
import { ErrorCode, OutpostError, errorMessage } from '../errors.js'
import type { Clock } from '../ports/clock.js'
import type { QueueStore } from '../ports/queue-store.js'
import type { ClockSteps } from './clock-steps.js'
import { abandon, abort, type Active, type QueueState } from './runner-state.js'

/** How often completed jobs past their retention are deleted. */
const PRUNE_EVERY_MS = 60_000

/** The queue runner's periodic sweep. */
export interface LeaseSweep {
  /** Starts sweeping (the first sweep also prunes). */
  start(): void
  /** Stops sweeping; a sweep running now schedules no next one. */
  stop(): void
}

/**
 * Creates the sweep of the jobs a runner holds: renews leases (of jobs leased ahead, and of
 * running ones when the queue renews by itself), notices lost leases and attempts past their
 * timeout, and prunes completed jobs past their retention once a minute. Storage trouble is
 * logged (at `storeTrouble`'s rate) and tried again at the next sweep.
 */
export function createLeaseSweep(deps: {
  store: QueueStore
  clock: Clock
  queues: readonly QueueState[]
  storeTrouble: LogLimiter
  steps: ClockSteps
  /** Gives a timed-out attempt's slot back and settles it as a TIMEOUT retry (its worker did not return once aborted). */
  release: (a: Active, error: OutpostError) => void
}): LeaseSweep {
  const { store, clock, storeTrouble, steps } = deps
  const all = deps.queues
  let stopped = false
  let cancelSweep: (() => void) | undefined
  let lastPrune = 0

  // Lease loss is noticed within one sweep (a third of the lease when workers heartbeat by hand).
  const sweepEvery = Math.max(
    10,
    Math.floor(Math.min(
      ...all.map((q) => {
        const p = q.def.policy
        const renew = p.heartbeatMs > 0 ? p.heartbeatMs : p.leaseMs / 3
        return p.timeoutMs === undefined ? renew : Math.min(renew, p.timeoutMs / 4)
      }),
      PRUNE_EVERY_MS,
    )),
  )

  const sweep = (): void => {
    const now = clock.now()
    steps.check(now)
    // Pruning is due once a minute; a clock set back (now before the last prune) does not put it off for as long.
    const prune = now - lastPrune >= PRUNE_EVERY_MS || now < lastPrune
    const lost: Active[] = []
    const stuck: [Active, OutpostError][] = []
    try {
      store.transaction.run(() => {
        steps.store(now)
        for (const q of all) {
          const p = q.def.policy
          const renewEvery = p.heartbeatMs > 0 ? p.heartbeatMs : p.leaseMs / 3
          // Leased ahead and not started: held by this runtime, so renewed by it.
          q.buffer = q.buffer.filter((b) => {
            if (now - b.renewedAt < renewEvery) return true
            if (!store.heartbeat(b.job.id, b.job.attempt, now, p.leaseMs)) {
              // Its lease ran out before it began (the process stood still): given back with no
              // attempt counted (runner-state.ts, giveBackRunOut). Cancelled: nothing to give back.
              store.release(b.job.id, b.job.attempt, now)
              return false
            }
            b.renewedAt = now
            b.job.leaseUntil = now + p.leaseMs
            return true
          })
          for (const a of q.active) {
            if (a.abandoned) continue
            if (p.timeoutMs !== undefined && !a.timedOut && now - a.startedAt >= p.timeoutMs) {
              a.timedOut = true
              abort(a, new OutpostError(ErrorCode.TIMEOUT, `job ${a.job.id} ran past its ${p.timeoutMs} ms timeout`))
            } else if (a.timedOut) {
              // Aborted a sweep ago and still not returned (a worker that ignores its signal, or a
              // promise that never settles): its slot held the queue for ever. The attempt counts
              // as failed now; whatever the worker does later is ignored.
              stuck.push([a, new OutpostError(ErrorCode.TIMEOUT, `attempt ran past its ${p.timeoutMs} ms timeout and did not return when aborted`)])
              continue
            }
            if (p.heartbeatMs > 0 && !a.timedOut && now - a.renewedAt >= p.heartbeatMs) {
              if (store.heartbeat(a.job.id, a.job.attempt, now, p.leaseMs)) {
                a.renewedAt = now
                a.leaseUntil = now + p.leaseMs
              } else lost.push(a)
            } else if (a.leaseUntil <= now) lost.push(a)
          }
          if (prune) store.pruneCompleted(q.def.key, now - p.keepCompletedMs)
        }
      })
      steps.committed()
      if (prune) lastPrune = now
    } catch (err) {
      storeTrouble.warn('renewal-not-stored', { err: errorMessage(err) }, 'lease renewal not stored; trying again at the next sweep')
    }
    for (const a of lost) abandon(a, new OutpostError(ErrorCode.LEASE_LOST, `job ${a.job.id} lost its lease`))
    for (const [a, err] of stuck) deps.release(a, err)
    if (!stopped) cancelSweep = clock.setTimer(clock.now() + sweepEvery, sweep)
  }

  return {
    start() {
      lastPrune = clock.now() - PRUNE_EVERY_MS // prune at the first sweep
      cancelSweep = clock.setTimer(clock.now() + sweepEvery, sweep)
    },
    stop() {
      stopped = true
      cancelSweep?.()
    },
  }
}
