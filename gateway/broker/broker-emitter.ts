import { Qlobber } from 'qlobber'

/** A message as aedes hands it to its emitter (an aedes packet: at least a topic). */
export interface EmittedMessage {
  topic: string
  [key: string]: unknown
}

type Listener = (message: EmittedMessage, done: () => void) => void
type Done = (err?: Error) => void

/**
 * The emitter aedes delivers through (its `mq` option), in place of the mqemitter it makes for
 * itself. Same contract (topic matching with MQTT wildcards, a message is done once every
 * matching listener called back), different dispatch:
 *
 * - mqemitter starts the next queued message from inside the callback of the one before; when
 *   listeners call back at once (no subscriber left on the topic) each message nests one level
 *   deeper, and a queue of some thousands overflows the stack (`RangeError: Maximum call stack
 *   size exceeded`, the gateway process dies). Here a single loop takes messages off the queue:
 *   a callback that comes while the loop runs only leaves work for it, so the stack stays flat
 *   however long the queue.
 * - No shared limit by default (`concurrency` 0): with aedes' limit of 100 messages in flight,
 *   a hundred deliveries waiting for one subscriber's socket stopped delivery to every client.
 *   Each publisher is held back on its own instead: aedes reads a connection's next chunk only
 *   once the messages of the last one are delivered.
 * - In count order (see `begin`): aedes numbers every message it publishes (`brokerCounter`) and
 *   takes a message that reaches a client after a higher-numbered one for a copy it already sent
 *   (lib/client.js, dedupe): it drops it, and clears it from a persistent session's queue.
 *   Messages go through the broker's stores at different speeds (a retained one waits for its
 *   write), so a retained status published just before a plain event came out after it and no
 *   subscriber got it. Here a message waits until every message numbered before it was
 *   delivered or given up.
 */
export class BrokerEmitter {
  /** Most messages in flight at once; 0: no limit. */
  readonly concurrency: number
  /** Messages being delivered now. */
  current = 0
  closed = false
  /** Messages whose delivery to every listener finished, since start (for metrics). */
  delivered = 0
  private readonly matcher: Qlobber<Listener>
  // Taken from `head` on, and cut when half of it is behind: shift() is linear in a long array.
  private queue: { message: EmittedMessage; done: Done }[] = []
  private head = 0
  private pumping = false
  // Count order: numbers of messages begun and not yet out (ascending: they are begun in count
  // order), from `orderHead` on; those among them that are out already, or held back.
  private order: number[] = []
  private orderHead = 0
  private readonly out = new Set<number>()
  private readonly held = new Map<number, { message: EmittedMessage; done: Done }>()
  private readonly waitMs: number
  /** Told when message n reaches the emitter: aedes emits a message after its stores took it. */
  private readonly stored = new Map<number, () => void>()
  private waitTimer: NodeJS.Timeout | undefined
  /** Messages let through although one numbered before them never came (see `waitMs`). */
  gaveUp = 0

  /**
   * @param opts.concurrency most messages in flight at once (default 0: no limit)
   * @param opts.orderWaitMs longest a message waits for one numbered before it (default 5 000):
   *   a message whose publish stalled must not hold back every other message for good
   */
  constructor(opts: { concurrency?: number; orderWaitMs?: number } = {}) {
    this.concurrency = opts.concurrency ?? 0
    this.waitMs = opts.orderWaitMs ?? 5_000
    // The settings aedes gives its own mqemitter ([MQTT-4.7.1-3]: `a//b` has an empty level).
    this.matcher = new Qlobber<Listener>({ separator: '/', wildcard_one: '+', wildcard_some: '#', match_empty_levels: true })
  }

  /** Messages waiting for a slot (always 0 without a concurrency limit). */
  get length(): number {
    return this.queue.length - this.head
  }

  on(topic: string, notify: Listener, done?: () => void): this {
    this.matcher.add(topic, notify)
    if (done) setImmediate(done)
    return this
  }

  removeListener(topic: string, notify: Listener, done?: () => void): this {
    // Later, as mqemitter does: a message being delivered still reaches the listener it matched.
    setImmediate(() => {
      this.matcher.remove(topic, notify)
      done?.()
    })
    return this
  }

  removeAllListeners(topic: string, done?: () => void): this {
    this.matcher.remove(topic)
    if (done) setImmediate(done)
    return this
  }

  emit(message: EmittedMessage, done: Done = () => {}): this {
    if (this.closed) {
      done(new Error('emitter is closed'))
      return this
    }
    const n = message.brokerCounter
    if (typeof n === 'number' && this.stored.size > 0) {
      const told = this.stored.get(n)
      if (told !== undefined) {
        this.stored.delete(n)
        told()
      }
    }
    if (typeof n === 'number' && this.orderHead < this.order.length && n !== this.order[this.orderHead] && this.isBegun(n)) {
      // One numbered before it is still on its way: after that one.
      this.held.set(n, { message, done })
      this.waitTimer ??= setTimeout(() => this.giveUp(), this.waitMs)
      return this
    }
    this.queue.push({ message, done })
    if (typeof n === 'number' && this.isBegun(n)) this.markOut(n)
    this.pump()
    return this
  }

  /**
   * Says that the message aedes numbers `n` (its `brokerCounter`) is on its way: messages
   * numbered after it are delivered after it, once it is emitted or `end`ed. Called in count
   * order, for every message aedes publishes (mqtt-broker.ts wraps its publish).
   */
  begin(n: number, stored?: () => void): void {
    this.order.push(n)
    if (stored !== undefined) this.stored.set(n, stored)
  }

  /** The publish of message `n` is over (delivered, failed, or never numbered): nothing more to wait for. */
  end(n: number): void {
    this.stored.delete(n)
    if (this.held.has(n) || !this.isBegun(n)) return
    this.markOut(n)
    this.pump()
  }

  /** Takes back a `begin(n)` whose message was never numbered (its publish was refused at once). */
  cancel(n: number): void {
    this.stored.delete(n)
    for (let i = this.order.length - 1; i >= this.orderHead; i--) {
      if (this.order[i] !== n) continue
      this.order.splice(i, 1)
      break
    }
    this.advance()
    this.pump()
  }

  /** Messages held back behind one numbered before them (for metrics). */
  get waiting(): number {
    return this.held.size
  }

  close(done: () => void): this {
    this.closed = true
    if (this.waitTimer !== undefined) clearTimeout(this.waitTimer)
    setImmediate(done)
    return this
  }

  /** Whether `n` was begun and is not out yet. */
  private isBegun(n: number): boolean {
    if (this.orderHead >= this.order.length || n < this.order[this.orderHead]! || this.out.has(n)) return false
    // Begun numbers are few (the publishes in progress) and ascending: a binary search.
    let lo = this.orderHead
    let hi = this.order.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      const v = this.order[mid]!
      if (v === n) return true
      if (v < n) lo = mid + 1
      else hi = mid - 1
    }
    return false
  }

  /** Marks `n` out, then lets the held messages go whose turn came. */
  private markOut(n: number): void {
    this.out.add(n)
    this.advance()
  }

  /** Moves past the numbers that are out, sending the held messages whose turn came, in order. */
  private advance(): void {
    while (this.orderHead < this.order.length) {
      const head = this.order[this.orderHead]!
      const next = this.held.get(head)
      if (next !== undefined) {
        this.held.delete(head)
        this.queue.push(next)
      } else if (!this.out.delete(head)) break
      else {
        this.orderHead++
        continue
      }
      this.orderHead++
    }
    if (this.orderHead >= 1024 && this.orderHead * 2 >= this.order.length) {
      this.order = this.order.slice(this.orderHead)
      this.orderHead = 0
    }
    if (this.held.size === 0 && this.waitTimer !== undefined) {
      clearTimeout(this.waitTimer)
      this.waitTimer = undefined
    }
  }

  /** The head waited `waitMs`: it is passed over, and what waited behind it goes. */
  private giveUp(): void {
    this.waitTimer = undefined
    while (this.held.size > 0 && this.orderHead < this.order.length) {
      const head = this.order[this.orderHead]!
      if (this.held.has(head)) break
      this.gaveUp++
      this.markOut(head)
    }
    this.pump()
    if (this.held.size > 0) this.waitTimer = setTimeout(() => this.giveUp(), this.waitMs)
  }

  /** Starts queued messages while slots are free; re-entered (from a callback), it leaves them to the loop already running. */
  private pump(): void {
    if (this.pumping) return
    this.pumping = true
    try {
      while (this.head < this.queue.length && (this.concurrency === 0 || this.current < this.concurrency)) {
        const next = this.queue[this.head]!
        this.queue[this.head++] = undefined as never
        if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
          this.queue = this.queue.slice(this.head)
          this.head = 0
        }
        this.dispatch(next.message, next.done)
      }
    } finally {
      this.pumping = false
    }
  }

  private dispatch(message: EmittedMessage, done: Done): void {
    this.current++
    const listeners = this.matcher.match(message.topic)
    let left = listeners.length
    const finish = (): void => {
      this.current--
      this.delivered++
      done()
      this.pump()
    }
    if (left === 0) return finish()
    const one = (): void => {
      if (--left === 0) finish()
    }
    for (const listener of listeners) listener.call(this, message, one)
  }
}
