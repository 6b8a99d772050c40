import type { Logger } from 'pino'
import { ErrorCode, errorCode, errorMessage, isOutpostError } from '../errors.js'
import type { Bridge, PublishOptions } from '../ports/bridge.js'
import { systemClock, UNREF, type Clock } from '../ports/clock.js'
import type { Outbox, OutboxEntry } from '../ports/outbox.js'
import { createLogLimiter } from '../log-limiter.js'

// Stored frames go out at QoS 1: each entry is removed only once the broker has it. The outbox
// holds every frame and the pump sends again from the oldest unacknowledged one after a
// reconnect, so the transport need keep no copy (callerResends).
const PLAIN: PublishOptions = { qos: 1, retain: false, callerResends: true }
const RETAIN: PublishOptions = { qos: 1, retain: true, callerResends: true }

/** Moves outbox entries to the broker while connected. */
export interface OutboxPump {
  /** Something was appended: deliver it if connected. */
  kick(): void
  /** Stops delivering; resolves once publishes in flight settled or after `ms`. */
  stop(ms: number): Promise<void>
}

/**
 * Creates the pump: in seq order, at most `window` messages awaiting the broker's
 * acknowledgement; each entry is removed only once acknowledged. After a lost connection
 * it starts again from the oldest entry still there, so what was in flight is sent again
 * (at least once: receivers drop duplicates by message id).
 */
export function createOutboxPump(opts: { outbox: Outbox; bridge: Bridge; window?: number; log: Logger; clock?: Clock }): OutboxPump {
  const { outbox, bridge, log } = opts
  const clock = opts.clock ?? systemClock
  const limited = createLogLimiter(log, { clock })
  const window = Math.max(1, opts.window ?? 128)
  let lastSent = 0 // highest seq handed to the bridge in this connection
  let inFlight = 0
  let generation = 0 // bumps on every (re)connect: acks from an older connection do not count against the window
  let scheduled = false
  let stopped = false
  let onIdle: (() => void) | undefined

  // Entries read ahead from the outbox, in order: one query per READ_AHEAD entries, not per message.
  const READ_AHEAD = 512
  let buffer: OutboxEntry[] = []
  let at = 0

  /** A publish of connection `gen` finished, either way. */
  const settled = (gen: number): void => {
    if (gen === generation) inFlight--
    if (inFlight === 0) onIdle?.()
  }

  const pump = (): void => {
    scheduled = false
    if (stopped || bridge.status.type !== 'connected') return
    while (inFlight < window) {
      if (at >= buffer.length) {
        try {
          buffer = outbox.peek(lastSent, READ_AHEAD)
        } catch (err) {
          // Storage cannot be read just now (busy past its wait, say): look again in a while.
          // This runs from a microtask; a throw here would end the process.
          buffer = []
          at = 0
          retryLater(err)
          break
        }
        at = 0
        if (buffer.length === 0) break
      }
      const entry = buffer[at++]!
      lastSent = entry.seq
      if (entry.frame.length > bridge.maxPayloadBytes) {
        // Stored before the limit was this low (an older version, a changed configuration): it
        // can never be sent, and sent anyway a broker would close the connection on it, after
        // each reconnect again, and nothing behind it would go. Dropped, counted and said.
        tooLarge(entry)
        continue
      }
      inFlight++
      const gen = generation
      // The stored frame goes out as it is: bytes on its topic, never decoded.
      bridge.publish(entry.topic, entry.frame, entry.retain ? RETAIN : PLAIN).then(
        () => {
          outbox.ack(entry.seq)
          settled(gen)
          kick()
        },
        (err: unknown) => {
          settled(gen)
          if (isOutpostError(err, ErrorCode.FRAME_TOO_LARGE)) tooLarge(entry)
          else log.debug({ seq: entry.seq, err: errorMessage(err) }, 'outbox publish failed; will be sent again')
        },
      )
    }
  }

  const tooLarge = (entry: OutboxEntry): void => {
    outbox.discard(entry.seq, `too-large:${entry.stream}`)
    limited.error(
      'too-large',
      { seq: entry.seq, stream: entry.stream, topic: entry.topic, bytes: entry.frame.length, limit: bridge.maxPayloadBytes },
      `outbox entry of ${entry.frame.length} bytes exceeds the ${bridge.maxPayloadBytes}-byte frame limit; dropped (it can never be sent)`,
    )
  }

  // One retry timer at most, after a failed read of the outbox.
  const RETRY_MS = 1_000
  let retryTimer: (() => void) | undefined // cancels the armed retry
  const retryLater = (err: unknown): void => {
    const code = errorCode(err)
    limited.warn(`peek:${code}`, { code }, `outbox not readable; trying again: ${errorMessage(err)}`)
    if (retryTimer !== undefined || stopped) return
    retryTimer = clock.setTimer(
      clock.now() + RETRY_MS,
      () => {
        retryTimer = undefined
        kick()
      },
      UNREF,
    )
  }

  const kick = (): void => {
    if (scheduled || stopped) return
    scheduled = true
    queueMicrotask(pump)
  }

  bridge.onStatus((s) => {
    if (s.type === 'connected') {
      generation++
      inFlight = 0
      lastSent = 0 // from the oldest entry still waiting
      buffer = []
      at = 0
      kick()
    }
  })
  kick()

  return {
    kick,
    stop(ms) {
      stopped = true
      retryTimer?.()
      if (inFlight === 0) return Promise.resolve()
      return new Promise<void>((resolve) => {
        const t = setTimeout(resolve, ms)
        onIdle = () => {
          clearTimeout(t)
          resolve()
        }
      })
    },
  }
}
