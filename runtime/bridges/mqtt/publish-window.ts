import { ErrorCode, OutpostError } from '../../errors.js'
import type { Socket } from 'node:net'
import type { DirectPublisher } from './direct-publisher.js'
import type { MqttClient } from './mqtt-options.js'

const AT_LEAST_ONCE = { qos: 1, retain: false } as const
const AT_LEAST_ONCE_RETAINED = { qos: 1, retain: true } as const
const AT_MOST_ONCE = { qos: 0, retain: false } as const
const AT_MOST_ONCE_RETAINED = { qos: 0, retain: true } as const

/** Publishes of one MQTT bridge: QoS 1 ones bounded by an in-flight window, QoS 0 ones straight out. */
export interface PublishWindow {
  /**
   * QoS 1: settles with the broker's PUBACK; waits for a free slot while `size` publishes await
   * theirs. `direct`: written by the transport itself (the caller sends again after a reconnect:
   * no copy kept, rejected when the connection is lost). @throws (rejects) BRIDGE_UNAVAILABLE
   */
  acked(c: MqttClient, topic: string, payload: Uint8Array, retain: boolean, direct: boolean): Promise<void>
  /** QoS 0: settles once written. @throws (rejects) BRIDGE_UNAVAILABLE */
  once(c: MqttClient, topic: string, payload: Uint8Array, retain: boolean): Promise<void>
  /** Resolves once no QoS 1 publish awaits its PUBACK. */
  drained(): Promise<void>
}

/** Creates the window; `published` is told of every publish that went out; `direct` writes the direct ones. */
export function createPublishWindow(size: number, published: () => void, direct: DirectPublisher): PublishWindow {
  const window = Math.max(1, size)
  let inFlight = 0
  const waiters: (() => void)[] = []
  let drainWaiter: (() => void) | undefined
  const failed = (topic: string, err: Error): OutpostError =>
    new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `publish to ${topic} failed: ${err.message}`, { cause: err, retryable: true })

  const acked = (c: MqttClient, topic: string, payload: Uint8Array, retain: boolean, isDirect: boolean): Promise<void> => {
    if (inFlight >= window) {
      // Window full: wait for a PUBACK to free a slot, then try again.
      return new Promise<void>((r) => waiters.push(r)).then(() => acked(c, topic, payload, retain, isDirect))
    }
    inFlight++
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        inFlight--
        waiters.shift()?.()
        if (inFlight === 0) drainWaiter?.()
        if (err) return reject(failed(topic, err))
        published()
        resolve()
      }
      if (isDirect) direct.publish(c.stream as Socket, topic, payload, retain, done)
      else c.publish(topic, payload as Buffer, retain ? AT_LEAST_ONCE_RETAINED : AT_LEAST_ONCE, done)
    })
  }
  return {
    acked,
    once: (c, topic, payload, retain) =>
      new Promise<void>((resolve, reject) => {
        c.publish(topic, payload as Buffer, retain ? AT_MOST_ONCE_RETAINED : AT_MOST_ONCE, (err) => {
          if (err) return reject(failed(topic, err))
          published()
          resolve()
        })
      }),
    drained: () => (inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => (drainWaiter = r))),
  }
}
