// The emitter the gateway hands aedes: MQTT topic matching, completion once every listener called
// back, and a flat stack however many messages wait and however listeners call back.
import { describe, expect, it } from 'vitest'
import { BrokerEmitter, type EmittedMessage } from '../../gateway/broker/broker-emitter.js'
import { until } from '../helpers/wait.js'

const msg = (topic: string, n = 0): EmittedMessage => ({ topic, n })

describe('broker emitter', () => {
  it('delivers by MQTT topic filter, empty levels included, and is done once every listener called back', async () => {
    const e = new BrokerEmitter()
    const got: string[] = []
    const later: (() => void)[] = []
    e.on('a/+/c', (m, done) => {
      got.push(`plus ${m.topic}`)
      later.push(done)
    })
    e.on('a/#', (m, done) => {
      got.push(`hash ${m.topic}`)
      done()
    })
    let finished = 0
    e.emit(msg('a/b/c'), () => finished++)
    e.emit(msg('a//c'), () => finished++)
    e.emit(msg('x/y'), () => finished++)
    expect(got.sort()).toEqual(['hash a//c', 'hash a/b/c', 'plus a//c', 'plus a/b/c'])
    // The message nobody listens to is done; the two others wait for their slow listener.
    expect(finished).toBe(1)
    expect(e.current).toBe(2)
    later.splice(0).forEach((d) => d())
    expect(finished).toBe(3)
    expect(e.current).toBe(0)
  })

  it('keeps the stack flat through a queue of 200,000 messages that nobody listens to, in order', () => {
    // One slot: every message waits in the queue and starts from the callback of the one before.
    const e = new BrokerEmitter({ concurrency: 1 })
    const held: (() => void)[] = []
    e.on('held', (_m, done) => void held.push(done))
    e.emit(msg('held'))
    const order: number[] = []
    for (let i = 0; i < 200_000; i++) e.emit(msg('nobody/here', i), () => void order.push(i))
    expect(e.length).toBe(200_000)
    held[0]!()
    expect(order.length).toBe(200_000)
    expect(order.every((n, i) => n === i)).toBe(true)
    expect(e.length).toBe(0)
  })

  it('takes messages emitted from inside a callback after those already waiting, without nesting', () => {
    const e = new BrokerEmitter()
    const order: string[] = []
    e.on('t/#', (m, done) => {
      order.push(m.topic)
      done()
    })
    let depth = 0
    let deepest = 0
    const chain = (n: number): void => {
      depth++
      deepest = Math.max(deepest, depth)
      e.emit(msg(`t/${n}`), () => {
        if (n < 50_000) chain(n + 1)
      })
      depth--
    }
    chain(0)
    expect(order.length).toBe(50_001)
    expect(order[50_000]).toBe('t/50000')
    // The first callback runs inside the first emit; every later emit is only queued there.
    expect(deepest).toBe(2)
  })

  it('holds messages past its concurrency until a slot frees', () => {
    const e = new BrokerEmitter({ concurrency: 2 })
    const pending: (() => void)[] = []
    e.on('q', (_m, done) => void pending.push(done))
    for (let i = 0; i < 5; i++) e.emit(msg('q', i))
    expect(e.current).toBe(2)
    expect(e.length).toBe(3)
    pending.shift()!()
    expect(e.current).toBe(2)
    expect(e.length).toBe(2)
    while (pending.length > 0) pending.shift()!()
    expect(e.current).toBe(0)
    expect(e.length).toBe(0)
  })

  it('removes a listener after the messages being delivered, and refuses messages once closed', async () => {
    const e = new BrokerEmitter()
    const got: number[] = []
    const listener = (m: EmittedMessage, done: () => void): void => {
      got.push(m.n as number)
      done()
    }
    e.on('r', listener)
    let removed = false
    e.removeListener('r', listener, () => void (removed = true))
    e.emit(msg('r', 1))
    await until(() => removed)
    e.emit(msg('r', 2))
    expect(got).toEqual([1])
    await new Promise<void>((r) => e.close(r))
    const err = await new Promise<Error | undefined>((r) => e.emit(msg('r', 3), r))
    expect(err).toBeInstanceOf(Error)
  })

  it('delivers messages in the order aedes numbered them, holding one back until those before it are out or over', () => {
    const e = new BrokerEmitter()
    const got: number[] = []
    e.on('t/#', (m, done) => {
      got.push(m.brokerCounter as number)
      done()
    })
    const numbered = (n: number): EmittedMessage => ({ topic: 't/x', brokerCounter: n })
    e.begin(1)
    e.begin(2)
    e.begin(3)
    e.begin(4)
    // 3 and 2 come before 1 (1 waits for its store): held.
    e.emit(numbered(3))
    e.emit(numbered(2))
    expect(got).toEqual([])
    expect(e.waiting).toBe(2)
    e.emit(numbered(1))
    expect(got).toEqual([1, 2, 3])
    // 4 is never emitted (its publish failed): what comes after it does not wait once it is over.
    e.begin(5)
    e.emit(numbered(5))
    expect(got).toEqual([1, 2, 3])
    e.end(4)
    expect(got).toEqual([1, 2, 3, 5])
    // A publish refused before it was numbered takes its number back.
    e.begin(6)
    e.begin(7)
    e.emit(numbered(7))
    e.cancel(6)
    expect(got).toEqual([1, 2, 3, 5, 7])
    // A message no begin announced (numbered outside publish) is not held.
    e.begin(8)
    e.emit(numbered(100))
    expect(got).toEqual([1, 2, 3, 5, 7, 100])
    expect(e.waiting).toBe(0)
  })

  it('gives up waiting for a message that never comes, after orderWaitMs', async () => {
    const e = new BrokerEmitter({ orderWaitMs: 50 })
    const got: number[] = []
    e.on('t', (m, done) => {
      got.push(m.brokerCounter as number)
      done()
    })
    e.begin(1)
    e.begin(2)
    e.emit({ topic: 't', brokerCounter: 2 })
    expect(got).toEqual([])
    await until(() => got.length === 1, 5_000)
    expect(got).toEqual([2])
    expect(e.gaveUp).toBe(1)
    // The late one still goes out when it comes.
    e.emit({ topic: 't', brokerCounter: 1 })
    expect(got).toEqual([2, 1])
    e.close(() => {})
  })
})
