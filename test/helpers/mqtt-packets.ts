import net from 'node:net'
/** One whole MQTT packet cut from the front of a buffer: its first byte, its body, and the bytes after it. */
export interface RawPacket {
  first: number
  body: Buffer
  rest: Buffer
}

/**
 * Cuts the first whole MQTT packet off `buf` (fixed header, remaining length as a variable byte
 * integer, body), for test brokers written by hand; undefined while more bytes are needed.
 */
export function nextPacket(buf: Buffer): RawPacket | undefined {
  let length = 0
  let mult = 1
  let at = 1
  for (;;) {
    if (at >= buf.length) return undefined
    const b = buf[at++]!
    length += (b & 0x7f) * mult
    mult *= 128
    if ((b & 0x80) === 0) break
  }
  if (buf.length < at + length) return undefined
  return { first: buf[0]!, body: buf.subarray(at, at + length), rest: buf.subarray(at + length) }
}

/** MQTT's remaining length of `n` bytes: seven bits a byte, the high bit saying that more follow. */
export function remainingLength(n: number): Buffer {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return Buffer.from(out)
}

/** An MQTT string: two length bytes, then UTF-8. */
export const mqttString = (s: string): Buffer => {
  const b = Buffer.from(s)
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b])
}

/** A whole MQTT packet: its first byte, the remaining length, the body. */
export const mqttPacket = (first: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([first]), remainingLength(body.length), body])

/**
 * A subscriber that never reads its socket after sending CONNECT and SUBSCRIBE (MQTT 3.1.1):
 * written by hand because an MQTT.js client keeps reading whatever one does to it.
 */
export async function stuckSubscriber(port: number, clientId: string, topic: string, o: { qos?: 0 | 1; persistent?: boolean } = {}): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1')
  await new Promise<void>((r, j) => socket.once('connect', r).once('error', j))
  socket.on('error', () => {})
  const connect = mqttPacket(0x10, Buffer.concat([mqttString('MQTT'), Buffer.from([4, o.persistent ? 0 : 0x02, 0, 60]), mqttString(clientId)]))
  const subscribe = mqttPacket(0x82, Buffer.concat([Buffer.from([0, 1]), mqttString(topic), Buffer.from([o.qos ?? 0])]))
  socket.write(Buffer.concat([connect, subscribe]))
  // Paused with no 'data' listener: Node reads at most its high-water mark, then stops reading.
  socket.pause()
  return socket
}
