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

  constructor(opts: { concurrency?: number } = {}) {
    this.concurrency = opts.concurrency ?? 0
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
    this.queue.push({ message, done })
    this.pump()
    return this
  }

  close(done: () => void): this {
    this.closed = true
    setImmediate(done)
    return this
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
