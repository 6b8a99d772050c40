// The gateway's store-and-forward of device events to cloud targets. The broker hands it every
// client publish before acknowledging it (mqtt-broker.ts `beforePublish`); an event some route
// takes is committed to the forward queue (one transaction per tick for every publish that came
// in it) and only then acknowledged, so a device's outbox keeps an event until the gateway has
// it on disk. One pump per target drains the queue (forward-pump.ts).
import type { Logger } from 'pino'
import { ErrorCode, errorMessage, OutpostError } from '../../runtime/errors.js'
import { createLogLimiter } from '../../runtime/log-limiter.js'
import type { ForwardConfig, TargetConfig } from './forward-config.js'
import { createForwardPump, type ForwardPump, type PumpStats } from './forward-pump.js'
import { openForwardQueue, type Backlog, type ForwardQueue, type NewForwardMessage } from './forward-queue.js'
import { createRouter } from './router.js'
import type { ForwardMessage, ForwardTarget } from './target.js'
import { createNatsTarget } from './targets/nats-target.js'
import { createRabbitTarget } from './targets/rabbitmq-target.js'

/** One target's figures: its pump's, its queue's, and what was dropped for it. */
export interface TargetStats extends PumpStats {
  type: TargetConfig['type']
  backlog: Backlog
  /** Dead letters kept now. */
  dead: number
  /**
   * Events not forwarded to it, by reason: `full` (drop-newest or drop-oldest), `dead-evicted`
   * (dead letters deleted, oldest first, to keep them within the target's maxBytes).
   */
  dropped: Record<string, number>
}

export interface ForwarderStats {
  targets: Record<string, TargetStats>
  /** Publishes not forwarded at all, by reason: `malformed`, `sender`, `refused` (a full `refuse` target), `store` (the queue could not be written). */
  dropped: Record<string, number>
}

export interface Forwarder {
  /**
   * Called for each client publish before it is acknowledged: undefined when no route takes it
   * (nothing to wait for), else a promise that settles once its rows are committed.
   * @throws (rejects) TARGET_UNAVAILABLE for a full `refuse` target, STORE_* when the queue cannot be written
   */
  accept(topic: string, payload: Uint8Array): Promise<void> | undefined
  /** Starts the pumps (connecting to the targets). */
  start(): void
  stats(): ForwarderStats
  readonly queue: ForwardQueue
  /** Stops the pumps (what is in flight gets `drainMs`), commits what is pending and closes the queue. */
  close(drainMs?: number): Promise<void>
}

export interface ForwarderOptions {
  config: ForwardConfig
  /** `<dataDir>/forward.db`, or ':memory:' (kept while the process lives). */
  path: string
  log: Logger
  /** Makes the target of a configuration (tests hand in their own); default: NATS JetStream or RabbitMQ. */
  makeTarget?: (name: string, config: TargetConfig, log: Logger) => ForwardTarget
  /** Reconnect backoff of the pumps (default 500 ms doubling to 30 s, with jitter). */
  backoff?: { initialMs?: number; maxMs?: number }
}

/** How long a publish a full `refuse` target refused waits for room before it is refused (its connection closed), and how often it tries. */
const REFUSE_WAIT_MS = 5_000
const REFUSE_RETRY_MS = 250

const defaultTarget = (name: string, c: TargetConfig, log: Logger): ForwardTarget =>
  c.type === 'nats' ? createNatsTarget(name, c, { logger: log }) : createRabbitTarget(name, c, { logger: log })

/**
 * Opens the forward queue and makes a pump per target (not started).
 * @throws STORE_* when forward.db cannot be opened
 */
export function createForwarder(opts: ForwarderOptions): Forwarder {
  const { config, log } = opts
  const limits = Object.fromEntries(Object.entries(config.targets).map(([n, t]) => [n, { maxBytes: t.maxBytes, whenFull: t.whenFull }]))
  const queue = openForwardQueue({ path: opts.path, limits })
  const router = createRouter(config)
  const trouble = createLogLimiter(log)
  const make = opts.makeTarget ?? defaultTarget
  const pumps = new Map<string, ForwardPump>()
  const droppedFor = new Map<string, Record<string, number>>()
  for (const [name, c] of Object.entries(config.targets)) {
    pumps.set(name, createForwardPump({ target: make(name, c, log), queue, window: c.window, log, backoff: opts.backoff }))
    droppedFor.set(name, {})
  }
  const dropped: Record<string, number> = {}
  const count = (into: Record<string, number>, reason: string, n = 1): void => void (into[reason] = (into[reason] ?? 0) + n)

  // Group commit: the rows of every publish of this tick, in the order they came. `since`: when a
  // full `refuse` target first refused it.
  type Pending = { rows: NewForwardMessage[]; resolve: () => void; reject: (err: Error) => void; since?: number }
  let pending: Pending[] = []
  let scheduled = false
  let closed = false
  // Publishes a full `refuse` target refused, tried again until there is room or REFUSE_WAIT_MS
  // have passed. Refused at once, a device's burst lost the acknowledgements of the events before
  // the refused one in it (the connection closed first): it sent them all again, they filled the
  // queue again, and the device never got past them.
  let waiting: Pending[] = []
  let cancelRetry: (() => void) | undefined
  const retryWaiting = (): void => {
    cancelRetry = undefined
    const now = Date.now()
    const ready: Pending[] = []
    for (const w of waiting) {
      if (closed || now - w.since! < REFUSE_WAIT_MS) {
        ready.push(w)
        continue
      }
      count(dropped, 'refused')
      trouble.warn('refused', { targets: w.rows.map((x) => x.target) }, 'forward queue full (whenFull: refuse): events are not acknowledged; devices keep them')
      w.reject(new OutpostError(ErrorCode.TARGET_UNAVAILABLE, 'forward queue full', { retryable: true }))
    }
    waiting = []
    if (closed) {
      for (const w of ready) w.reject(new OutpostError(ErrorCode.TARGET_UNAVAILABLE, 'the gateway is stopping', { retryable: true }))
      return
    }
    // Before what came since, in the order they came.
    pending = ready.concat(pending)
    commit()
  }
  /** The last place the queue gave a row this gateway wrote (0: none yet). */
  let lastSeq = 0
  const commit = (): void => {
    scheduled = false
    const batch = pending
    pending = []
    if (batch.length === 0) return
    let results
    try {
      results = queue.append(batch.map((b) => b.rows))
    } catch (err) {
      count(dropped, 'store', batch.length)
      trouble.error(`store ${(err as { code?: string }).code ?? ''}`, { err: errorMessage(err) }, 'forward queue cannot be written: events are not acknowledged (devices keep them and send again)')
      for (const b of batch) b.reject(err as Error)
      return
    }
    const fresh = new Map<string, ForwardMessage[]>()
    let resync = false
    results.forEach((r, i) => {
      const b = batch[i]!
      if (r === undefined) {
        b.since ??= Date.now()
        waiting.push(b)
        return
      }
      for (const t of r.droppedNewest) count(droppedFor.get(t)!, 'full')
      for (const [t, n] of Object.entries(r.droppedOldest)) count(droppedFor.get(t)!, 'full', n)
      if (r.droppedNewest.length > 0 || Object.keys(r.droppedOldest).length > 0) {
        trouble.warn('full', { dropped: [...r.droppedNewest, ...Object.keys(r.droppedOldest)] }, 'forward queue full: events dropped (see outpost_gateway_forward_dropped_total)')
      }
      // Rows dropped to make room may be among those a pump holds in memory.
      if (Object.keys(r.droppedOldest).length > 0) resync = true
      for (const m of r.messages) {
        // Places are given one after another: a gap means someone else (a redrive) wrote rows
        // before these, which the pumps must read from the queue, in order, before them.
        if (lastSeq !== 0 && m.seq !== lastSeq + 1) resync = true
        lastSeq = m.seq
        const list = fresh.get(m.target)
        if (list === undefined) fresh.set(m.target, [m])
        else list.push(m)
      }
      b.resolve()
    })
    if (resync) for (const p of pumps.values()) p.resync()
    else for (const [t, list] of fresh) pumps.get(t)?.offer(list)
    if (waiting.length > 0 && cancelRetry === undefined) {
      const t = setTimeout(retryWaiting, REFUSE_RETRY_MS)
      cancelRetry = () => clearTimeout(t)
    }
  }

  return {
    queue,
    accept(topic, payload) {
      const routed = router.route(topic, payload, Date.now())
      if ('skipped' in routed) return undefined
      if ('dropped' in routed) {
        count(dropped, routed.dropped)
        return undefined
      }
      // Stopping: not acknowledged, so the device keeps it for the next gateway.
      if (closed) return Promise.reject(new OutpostError(ErrorCode.TARGET_UNAVAILABLE, 'the gateway is stopping', { retryable: true }))
      return new Promise<void>((resolve, reject) => {
        pending.push({ rows: routed.rows, resolve, reject })
        if (!scheduled) {
          scheduled = true
          setImmediate(commit)
        }
      })
    },
    start() {
      for (const p of pumps.values()) p.start()
    },
    stats() {
      const targets: Record<string, TargetStats> = {}
      for (const [name, p] of pumps) {
        const evicted = queue.deadEvicted(name)
        targets[name] = { ...p.stats(), type: config.targets[name]!.type, backlog: queue.backlog(name), dead: queue.deadCount(name), dropped: { ...droppedFor.get(name), ...(evicted > 0 ? { 'dead-evicted': evicted } : {}) } }
      }
      return { targets, dropped: { ...dropped } }
    },
    async close(drainMs = 2_000) {
      if (closed) return
      closed = true
      commit()
      cancelRetry?.()
      retryWaiting()
      await Promise.all([...pumps.values()].map((p) => p.stop(drainMs)))
      queue.close()
    },
  }
}
