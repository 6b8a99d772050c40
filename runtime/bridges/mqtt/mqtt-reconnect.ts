import { backoffDelay, type BackoffOptions } from '../../backoff.js'
import type { OutpostError } from '../../errors.js'
import type { LogLimiter } from '../../log-limiter.js'
import type { Clock } from '../../ports/clock.js'
import type { StatusHub } from '../bridge-kit.js'

/** What the reconnect machinery needs of its bridge. */
export interface ReconnectOptions {
  status: StatusHub
  clock: Clock
  backoff?: BackoffOptions
  /** A connection the broker closes sooner than this (ms) does not reset the backoff. */
  stableMs: number
  /** Named in the takeover warning. */
  clientId: string
  trouble: LogLimiter
  /** Opens the next connection once the backoff delay passed (`attempt`: its number). */
  reconnect(attempt: number): void
}

/**
 * The connections of one MQTT bridge, one after another: which one is current and how long it
 * lasted, the status between them, and the reconnect backoff.
 */
export interface Reconnects {
  /** Attempts since the last connection that lasted. */
  readonly attempt: number
  /** The broker accepted the current connection and it has not closed yet. */
  readonly up: boolean
  /** The broker accepted a connection (CONNACK); returns its sequence number. */
  accepted(): number
  /** Whether connection `seq` is the current one and still open. */
  isCurrent(seq: number): boolean
  /** The broker said the session was taken over (MQTT 5 DISCONNECT 0x8E). */
  takenOver(): void
  /** The bridge hangs up itself (resubscribe failed): that close says nothing about a takeover. */
  hangingUp(): void
  /** The connection closed: judges how long it lasted, then arms the next attempt. */
  lost(): void
  /** Cancels the armed reconnect and arms none again (the bridge closes). */
  stop(): void
}

/** Creates the machinery; `status` is told `reconnecting` and `disconnected` (`connecting` and `connected` are the bridge's). */
export function createReconnects(o: ReconnectOptions): Reconnects {
  const { status, clock, stableMs, clientId, trouble } = o
  let attempt = 0
  let stopped = false
  // The connection the broker accepted last (a sequence number) and when; undefined once it closed.
  let connection = 0
  let connectedAt: number | undefined
  // Connections in a row the broker closed soon after accepting them.
  let shortLived = 0
  // The broker said why it closed the connection (MQTT 5 DISCONNECT 0x8E: session taken over).
  let takenOver = false
  // We hung up ourselves (resubscribe failed); that close says nothing about a takeover.
  let hungUp = false
  let cancelTimer: (() => void) | undefined // cancels the armed reconnect

  const schedule = (): void => {
    if (stopped || cancelTimer !== undefined) return
    attempt++
    const delayMs = backoffDelay(attempt, o.backoff)
    status.set({ type: 'reconnecting', attempt, delayMs })
    cancelTimer = clock.setTimer(clock.now() + delayMs, () => {
      cancelTimer = undefined
      if (!stopped) o.reconnect(attempt)
    })
  }

  return {
    get attempt() {
      return attempt
    },
    get up() {
      return connectedAt !== undefined
    },
    accepted() {
      connectedAt = clock.now()
      hungUp = false
      takenOver = false
      return ++connection
    },
    isCurrent: (seq) => seq === connection && connectedAt !== undefined,
    takenOver() {
      takenOver = true
    },
    hangingUp() {
      hungUp = true
    },
    lost() {
      const upMs = connectedAt === undefined ? undefined : clock.now() - connectedAt
      connectedAt = undefined
      // A connection that lasted resets the backoff; one closed right after it was accepted does
      // not, so a takeover fight slows down instead of reconnecting at once.
      if (upMs !== undefined && upMs >= stableMs && !takenOver) {
        attempt = 0
        shortLived = 0
      } else if (upMs !== undefined && !hungUp) {
        shortLived++
      } else if (upMs === undefined) {
        // An attempt that failed: the broker itself was away (a restart), which a client taking the
        // session from us never makes it. Short connections either side of it are no takeover.
        shortLived = 0
      }
      if (status.current.type === 'connected') status.set({ type: 'disconnected' })
      schedule()
      if (upMs !== undefined && !hungUp && (takenOver || shortLived >= 2)) {
        const delayMs = status.current.type === 'reconnecting' ? status.current.delayMs : undefined
        trouble.warn(
          'taken-over',
          { clientId, upMs, inARow: shortLived, delayMs },
          `the broker keeps closing the connection of client id ${clientId} right after accepting it: another client (a second process of this device?) is probably connected with the same client id, or the broker refuses something this device publishes (nats-server closes the connection on a '.' in a topic, as in a queue's result events); backing off`,
        )
      }
    },
    stop() {
      stopped = true
      cancelTimer?.()
    },
  }
}

/** Whoever waits for the first connection (`connect()`): each is settled once, all at the same time. */
export interface Waiters {
  wait(): Promise<void>
  resolve(): void
  reject(err: OutpostError): void
}

/** Creates an empty list of waiters. */
export function createWaiters(): Waiters {
  let waiting: { resolve(): void; reject(e: OutpostError): void }[] = []
  const take = (): typeof waiting => {
    const all = waiting
    waiting = []
    return all
  }
  return {
    wait: () => new Promise<void>((resolve, reject) => waiting.push({ resolve, reject })),
    resolve() {
      for (const w of take()) w.resolve()
    },
    reject(err) {
      for (const w of take()) w.reject(err)
    },
  }
}
