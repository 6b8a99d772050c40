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
  /**
   * New messages were queued for this target (seq order): sent from memory while the pump has
   * read everything older from the queue; otherwise it reads them from the queue when their turn comes.
   */
  offer(messages: readonly ForwardMessage[]): void
  /** Rows were written by someone else (a redrive) or dropped: read the queue again from the cursor. */
  resync(): void
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

/**
 * Most a pump keeps of new messages in memory, ahead of sending them (8 MiB: some 30,000 small
 * events, a minute of a busy fleet): within it, a live event goes from the commit to the target
 * without being read back from the database.
 */
const FRESH_MAX_BYTES = 8 * 1024 * 1024
/** How often a caught-up pump with nothing to send reads the queue anyway, ms. */
const RESCAN_MS = 3_000
/** How long after a failed removal of confirmed messages it is tried again, ms. */
const REMOVE_RETRY_MS = 1_000
/** What a message held in memory costs, roughly: its body and subject and the objects around them. */
const heldBytes = (m: ForwardMessage): number => m.body.byteLength + m.subject.length * 2 + 256

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
  /**
   * True while every queued message of this target after `cursor` is in `fresh` (the last read
   * of the queue came back short, and every commit since was offered): new events then go out
   * without being read back from the database. Any doubt (reconnect, a write by someone else)
   * sets it false and empties `fresh`, and the queue is read again from the cursor. Past
   * FRESH_MAX_BYTES it is set false too, but what `fresh` holds goes out first: only what came
   * after it is read back (a burst of 20,000 events was all read back again).
   */
  let caughtUp = false
  let fresh: ForwardMessage[] = []
  /**
   * Where the unsent part of `fresh` begins: sending takes from here, not off the front of the
   * array (a splice moved every message behind it, at each confirmation: with thousands waiting,
   * the pump's largest cost). Sent slots are cleared, and the array is cut once half of it is sent.
   */
  let freshAt = 0
  /** Messages in `fresh` not sent yet. */
  const waiting = (): number => fresh.length - freshAt
  /** Bytes (bodies and subjects) held in `fresh`; past FRESH_MAX_BYTES the rest is read back from the queue. */
  let freshBytes = 0
  const inFlight = new Map<number, Promise<void>>()
  /** Confirmed seqs (with what their rows count for, when known), removed in one transaction a tick. */
  let confirmed = new Map<number, number | undefined>()
  let flushing = false
  let attempt = 0
  let timer: NodeJS.Timeout | undefined
  let unsubscribe: (() => void) | undefined
  let rescan: NodeJS.Timeout | undefined
  /** Messages the target refused for good whose move to the dead-letter table failed: moved on a later try. */
  const refused = new Map<number, string>()
  /** Set while confirmed or refused messages wait to be removed again after a failed removal. */
  let removeRetry: NodeJS.Timeout | undefined
  /** One timer at most: removals that failed (forward.db busy: another process holds its write lock) are tried again. */
  const retryRemovals = (): void => {
    if (stopping || removeRetry !== undefined) return
    removeRetry = setTimeout(() => {
      removeRetry = undefined
      if (!flushing) flushConfirmed()
      moveRefused()
    }, REMOVE_RETRY_MS)
    removeRetry.unref()
  }
  /**
   * Moves refused messages to the dead-letter table. One whose move fails stays queued behind the
   * cursor and is tried again shortly: left there, it counted in the backlog and was sent (and
   * refused) again only after a reconnect or a restart.
   */
  const moveRefused = (): void => {
    for (const [seq, reason] of refused) {
      try {
        queue.deadLetter(name, seq, reason, now())
      } catch (e) {
        trouble.error('dead-letter', { target: name, err: errorMessage(e) }, 'message not moved to the dead-letter table yet; trying again shortly')
        retryRemovals()
        return
      }
      refused.delete(seq)
      stats.deadLettered++
    }
  }

  const flushConfirmed = (): void => {
    flushing = false
    if (confirmed.size === 0) return
    const batch = confirmed
    confirmed = new Map()
    let bytes: number | undefined = 0
    for (const b of batch.values()) bytes = b === undefined || bytes === undefined ? undefined : bytes + b
    try {
      queue.remove(name, [...batch.keys()], bytes)
    } catch (err) {
      // Kept and removed on a later try (forward.db busy: another process holds its write lock).
      // Dropped here, they stayed in the queue behind the cursor, counted in the backlog, until a
      // reconnect or a restart sent them again (stored twice past the target's duplicate window).
      for (const [seq, b] of batch) confirmed.set(seq, b)
      trouble.error('remove', { target: name, err: errorMessage(err) }, 'forward queue: confirmed messages not removed yet; trying again shortly')
      retryRemovals()
    }
  }
  const confirm = (m: ForwardMessage): void => {
    confirmed.set(m.seq, m.bytes)
    if (!flushing) {
      flushing = true
      setImmediate(flushConfirmed)
    }
  }

  /** From here on, the queue is read again from the cursor. */
  const forget = (): void => {
    caughtUp = false
    fresh = []
    freshAt = 0
    freshBytes = 0
  }

  const fill = (): void => {
    if (!up || stopping) return
    while (inFlight.size < opts.window) {
      if (waiting() > 0) {
        const end = Math.min(fresh.length, freshAt + opts.window - inFlight.size)
        const from = fresh
        while (freshAt < end && fresh === from) {
          const m = fresh[freshAt]!
          fresh[freshAt++] = undefined as unknown as ForwardMessage
          freshBytes -= heldBytes(m)
          send(m)
        }
        if (freshAt === fresh.length) {
          fresh = []
          freshAt = 0
        } else if (freshAt >= 1024 && freshAt * 2 >= fresh.length) {
          fresh = fresh.slice(freshAt)
          freshAt = 0
        }
        continue
      }
      if (caughtUp) return
      const want = opts.window - inFlight.size
      let batch: ForwardMessage[]
      try {
        batch = queue.next(name, cursor, want)
      } catch (err) {
        trouble.error('read', { target: name, err: errorMessage(err) }, 'forward queue cannot be read; trying again shortly')
        return void setTimeout(fill, 1_000).unref()
      }
      // Short: nothing newer is queued now; what is committed from here on is offered.
      if (batch.length < want) {
        caughtUp = true
        fresh = []
        freshAt = 0
        freshBytes = 0
      }
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
          // The link works: the next loss starts the backoff from the beginning.
          attempt = 0
          confirm(m)
        },
        (err: unknown) => failed(m, err, gen),
      )
    } catch (err) {
      p = Promise.resolve(failed(m, err, gen))
    }
    const settled = p.finally(() => {
      inFlight.delete(m.seq)
      stats.inFlight = inFlight.size
      // From memory at once; from the queue in batches (half a window at a time), not one query per confirmation.
      if (gen === generation && (waiting() > 0 || (!caughtUp && inFlight.size <= opts.window >> 1))) fill()
    })
    inFlight.set(m.seq, settled)
    stats.inFlight = inFlight.size
  }

  const failed = (m: ForwardMessage, err: unknown, gen: number): void => {
    if (isOutpostError(err, ErrorCode.TARGET_REJECTED)) {
      const reason = errorMessage(err)
      trouble.warn('dead', { target: name, id: m.id, sender: m.device, reason }, 'target refused a message for good; it goes to the dead-letter table (outpost forward dead)')
      refused.set(m.seq, reason)
      moveRefused()
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
    // `attempt` is reset by the first message confirmed, not here: a target that takes the
    // connection but refuses every message for now (a full stream, a broker's nack) was
    // connected to again every 0.3 s for as long as it refused.
    up = true
    stats.state = 'up'
    // From the oldest message still queued: what was in flight when the last connection went is sent again.
    cursor = 0
    forget()
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
      // Rows another process wrote (`outpost forward redrive`) reach an idle pump within a few seconds.
      rescan = setInterval(() => {
        if (up && caughtUp && waiting() === 0 && inFlight.size < opts.window) {
          forget()
          fill()
        }
      }, RESCAN_MS)
      rescan.unref()
    },
    offer(messages) {
      if (!caughtUp) return
      for (const m of messages) {
        fresh.push(m)
        freshBytes += heldBytes(m)
      }
      // A target slower than the devices for long (or down): what comes next is read back from the queue.
      if (freshBytes > FRESH_MAX_BYTES) caughtUp = false
      if (up && inFlight.size < opts.window) fill()
    },
    resync() {
      forget()
      if (up && inFlight.size < opts.window) fill()
    },
    stats: () => ({ ...stats }),
    async stop(drainMs = 5_000) {
      stopping = true
      clearInterval(rescan)
      clearTimeout(removeRetry)
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
