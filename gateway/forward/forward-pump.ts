// Drains one target's forward queue: a window of sends in flight, in queue order on one
// connection; a confirmed message is removed from the queue, one the target refuses for good is
// dead-lettered, and any other failure takes the connection down, waits for what is in flight,
// then reconnects with backoff and random jitter and sends again from the oldest unconfirmed
// message (the target's dedupe, JetStream's Nats-Msg-Id, keeps a re-sent message stored once).
import type { Logger } from 'pino'
import { backoffDelay, type BackoffOptions } from '../../runtime/backoff.js'
import { ErrorCode, errorMessage, isOutpostError } from '../../runtime/errors.js'
import { createLogLimiter } from '../../runtime/log-limiter.js'
import type { ForwardQueue } from './forward-queue.js'
import type { ForwardMessage, ForwardTarget } from './target.js'

/** What a pump did, since the gateway started. */
export interface PumpStats {
  /** `up` (connected, sending), `connecting`, `backoff` (waiting to connect again), `stopped`. */
  state: 'up' | 'connecting' | 'backoff' | 'stopped'
  /** Messages the target confirmed (removed from the queue). */
  forwarded: number
  /** Of those, the target already had (a re-send it stored once). */
  duplicates: number
  /** Sends that failed and stay queued to be sent again. */
  retried: number
  /** Messages the target refused for good (moved to the dead-letter table). */
  deadLettered: number
  /** Connection attempts that failed. */
  connectFailures: number
  /** Sends in flight now. */
  inFlight: number
  /** The last failure, for the operator. */
  lastError?: string
}

export interface ForwardPump {
  /** Starts connecting and sending. */
  start(): void
  /** New messages were queued for this target. */
  wake(): void
  stats(): PumpStats
  /** Stops sending, waits (up to `drainMs`) for what is in flight, closes the target. */
  stop(drainMs?: number): Promise<void>
}

export interface PumpOptions {
  target: ForwardTarget
  queue: ForwardQueue
  /** Sends in flight at most. */
  window: number
  log: Logger
  backoff?: BackoffOptions
  now?: () => number
}

/** Creates the pump of one target; it does nothing until `start`. */
export function createForwardPump(opts: PumpOptions): ForwardPump {
  const { target, queue } = opts
  const name = target.name
  const now = opts.now ?? Date.now
  const backoff = { initialMs: 500, maxMs: 30_000, ...opts.backoff }
  const trouble = createLogLimiter(opts.log)
  const stats: PumpStats = { state: 'stopped', forwarded: 0, duplicates: 0, retried: 0, deadLettered: 0, connectFailures: 0, inFlight: 0 }
  let stopping = false
  let started = false
  /** Connection generation: results of sends from an older one change nothing but the queue. */
  let generation = 0
  let up = false
  /** The last seq handed to the target on this connection. */
  let cursor = 0
  const inFlight = new Map<number, Promise<void>>()
  /** Confirmed seqs, removed from the queue in one transaction a tick. */
  let confirmed: number[] = []
  let flushing = false
  let attempt = 0
  let timer: NodeJS.Timeout | undefined
  let unsubscribe: (() => void) | undefined

  const flushConfirmed = (): void => {
    flushing = false
    if (confirmed.length === 0) return
    const seqs = confirmed
    confirmed = []
    try {
      queue.remove(name, seqs)
    } catch (err) {
      // Sent again after the next reconnect (stored once by a target that dedupes); never lost.
      trouble.error('remove', { target: name, err: errorMessage(err) }, 'forward queue: confirmed messages not removed; they will be sent again')
    }
  }
  const confirm = (seq: number): void => {
    confirmed.push(seq)
    if (!flushing) {
      flushing = true
      setImmediate(flushConfirmed)
    }
  }

  const fill = (): void => {
    if (!up || stopping) return
    while (inFlight.size < opts.window) {
      let batch: ForwardMessage[]
      try {
        batch = queue.next(name, cursor, opts.window - inFlight.size)
      } catch (err) {
        trouble.error('read', { target: name, err: errorMessage(err) }, 'forward queue cannot be read; trying again shortly')
        return void setTimeout(fill, 1_000).unref()
      }
      if (batch.length === 0) return
      for (const m of batch) send(m)
    }
  }

  const send = (m: ForwardMessage): void => {
    cursor = m.seq
    const gen = generation
    let p: Promise<void>
    try {
      p = target.send(m).then(
        (r) => {
          stats.forwarded++
          if (r.duplicate) stats.duplicates++
          confirm(m.seq)
        },
        (err: unknown) => failed(m, err, gen),
      )
    } catch (err) {
      p = Promise.resolve(failed(m, err, gen))
    }
    const settled = p.finally(() => {
      inFlight.delete(m.seq)
      stats.inFlight = inFlight.size
      // Refilled in batches (half a window at a time), not one query per confirmation.
      if (gen === generation && inFlight.size <= opts.window >> 1) fill()
    })
    inFlight.set(m.seq, settled)
    stats.inFlight = inFlight.size
  }

  const failed = (m: ForwardMessage, err: unknown, gen: number): void => {
    if (isOutpostError(err, ErrorCode.TARGET_REJECTED)) {
      const reason = errorMessage(err)
      try {
        queue.deadLetter(name, m.seq, reason, now())
        stats.deadLettered++
        trouble.warn('dead', { target: name, id: m.id, device: m.device, reason }, 'target refused a message for good; it is in the dead-letter table (outpost forward dead list)')
      } catch (e) {
        trouble.error('dead-letter', { target: name, err: errorMessage(e) }, 'message not moved to the dead-letter table; it will be sent again')
      }
      return
    }
    stats.retried++
    stats.lastError = errorMessage(err)
    if (gen === generation) down(err)
  }

  /** The connection is lost: no more sends on it; once those in flight settled, connect again. */
  const down = (err: unknown): void => {
    if (!up) return
    up = false
    generation++
    unsubscribe?.()
    unsubscribe = undefined
    stats.lastError = errorMessage(err)
    trouble.warn('down', { target: name, err: stats.lastError, queued: queue.backlog(name).messages }, 'target unreachable; events wait in the forward queue')
    const waitFor = [...inFlight.values()]
    void Promise.allSettled(waitFor).then(async () => {
      await target.close().catch(() => {})
      flushConfirmed()
      if (!stopping) schedule()
    })
  }

  const schedule = (): void => {
    attempt++
    stats.state = 'backoff'
    const delay = backoffDelay(attempt, backoff)
    timer = setTimeout(() => void connect(), delay)
    timer.unref()
  }

  const connect = async (): Promise<void> => {
    timer = undefined
    if (stopping) return
    stats.state = 'connecting'
    try {
      await target.connect()
    } catch (err) {
      stats.connectFailures++
      stats.lastError = errorMessage(err)
      const code = isOutpostError(err) ? err.code : 'ERROR'
      trouble.warn(`connect ${code}`, { target: name, err: stats.lastError, attempt }, 'cannot connect to target; trying again with backoff')
      await target.close().catch(() => {})
      if (!stopping) schedule()
      return
    }
    if (stopping) return void (await target.close().catch(() => {}))
    if (attempt > 0) opts.log.info({ target: name, queued: queue.backlog(name).messages }, 'target reachable again; sending what waited')
    attempt = 0
    up = true
    stats.state = 'up'
    // From the oldest message still queued: what was in flight when the last connection went is sent again.
    cursor = 0
    const gen = generation
    unsubscribe = target.onDown((e) => {
      if (gen === generation) down(e)
    })
    fill()
  }

  return {
    start() {
      if (started) return
      started = true
      void connect()
    },
    wake() {
      if (up && inFlight.size < opts.window) fill()
    },
    stats: () => ({ ...stats }),
    async stop(drainMs = 5_000) {
      stopping = true
      if (timer !== undefined) clearTimeout(timer)
      const wait = Promise.allSettled([...inFlight.values()])
      await Promise.race([wait, new Promise((r) => setTimeout(r, drainMs).unref())])
      flushConfirmed()
      up = false
      generation++
      unsubscribe?.()
      await target.close().catch(() => {})
      stats.state = 'stopped'
    },
  }
}
