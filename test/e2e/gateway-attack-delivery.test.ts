// Outside attack on the gateway's delivery guarantees (issue 13): a real gateway process
// (gateway-attack-delivery-process.ts: authentication off, broker state in broker.db), driven
// by MQTT.js clients. What a publisher had acknowledged (PUBACK, PUBCOMP) must reach every
// persistent session it was for, across kill -9 too; a hostile client must not hold back the others.
import net from 'node:net'
import mqtt, { type MqttClient } from 'mqtt'
import mqttPacket from 'mqtt-packet'
import { afterEach, describe, expect, it } from 'vitest'
import { until } from '../helpers/wait.js'
import { startDeliveryGateway, type DeliveryGateway } from './gateway-attack-delivery-process.js'

describe('gateway delivery guarantees under attack', () => {
  let gw: DeliveryGateway | undefined
  const clients: MqttClient[] = []
  afterEach(async () => {
    for (const c of clients.splice(0)) c.end(true)
    await gw?.stop()
    gw = undefined
  })
  /** Counts each payload a client gets. */
  const tally = (c: MqttClient, into: Map<string, number>): void => {
    c.on('message', (_t, buf) => into.set(buf.toString('utf8'), (into.get(buf.toString('utf8')) ?? 0) + 1))
  }
  /**
   * A connected client; `into` tallies its messages from the start. A session's queued messages
   * can come in the same read as the CONNACK: MQTT.js emits them before a listener added after
   * `await connectAsync()` exists (seen as "lost" first messages on a loaded machine, although
   * the client had received and acknowledged them).
   */
  const connect = async (id: string, o: mqtt.IClientOptions = {}, into?: Map<string, number>): Promise<MqttClient> => {
    const c = mqtt.connect(gw!.mqttUrl, { clientId: id, reconnectPeriod: 0, connectTimeout: 20_000, ...o })
    clients.push(c)
    if (into !== undefined) tally(c, into)
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve())
      c.once('error', reject)
      c.once('close', () => reject(new Error(`${id}: connection closed before CONNACK`)))
    })
    return c
  }

  it('a persistent session subscribed to a/# and a/+ gets every acknowledged message, and is not cut off', async () => {
    // Each message matches both filters: the topic trie gave the client once per filter, broker.db
    // queued two copies, aedes sent one, dropped the other as a duplicate and cleared a queue
    // entry by that copy's packet id, which it had none of: the oldest entry without one went.
    // Seen every run before outgoingEnqueueCombi queued once per client: with 10 messages in
    // flight the subscriber was disconnected, and m0–m4 never arrived, not even after it came
    // back (the same with persistence: memory, aedes' own).
    gw = await startDeliveryGateway()
    const got = new Map<string, number>()
    let cut = false
    const sub = await connect('overlap-sub', { clean: false })
    tally(sub, got)
    sub.on('close', () => (cut = true))
    await sub.subscribeAsync({ 'a/#': { qos: 1 }, 'a/+': { qos: 1 } })
    const pub = await connect('overlap-pub')
    const bodies = Array.from({ length: 10 }, (_, i) => `m${i}`)
    // All in flight at once, each PUBACKed: stored for the session.
    await Promise.all(bodies.map((b) => pub.publishAsync('a/x', b, { qos: 1 })))
    await until(() => cut || bodies.every((b) => got.has(b)), 20_000)
    const cutLive = cut
    // Whatever the live connection missed comes when the session is back.
    sub.end(true)
    await connect('overlap-sub', { clean: false }, got)
    await until(() => bodies.every((b) => got.has(b)), 10_000).catch(() => {})
    expect({ cutLive, missing: bodies.filter((b) => !got.has(b)) }).toEqual({ cutLive: false, missing: [] })
  }, 60_000)

  // Failed now and then on a loaded machine (1 to 30 of the first messages of the first round
  // "lost"): a trace of the broker's queue showed them sent to the returning session and
  // acknowledged by it, in the read that carried its CONNACK, before the test listened (see connect).
  it('kill -9 in the middle of floods of retained, plain QoS 1 and QoS 2 messages: nothing acknowledged is lost for a persistent session', async () => {
    gw = await startDeliveryGateway()
    // What the session's first connection takes before its close is through counts as got: it
    // acknowledged it, and the broker rightly forgets it.
    const got = new Map<string, number>()
    const sub = await connect('kept', { clean: false })
    tally(sub, got)
    const firstGot = new Map<string, number>()
    tally(sub, firstGot)
    await sub.subscribeAsync('k/#', { qos: 1 })
    sub.end(true)
    /** Payloads whose PUBACK or PUBCOMP came; what is still open when the gateway dies is not promised. */
    const acked = new Set<string>()
    const retained = new Map<string, string>()
    for (let round = 0; round < 3; round++) {
      const pubs = await Promise.all([0, 1, 2, 3].map((i) => connect(`flood-${round}-${i}`)))
      let dead = false
      const floods = pubs.map(async (p, i) => {
        for (let k = 0; !dead; k++) {
          const body = `${round}-${i}-${k}`
          const qos = i === 3 ? 2 : 1
          const retain = i === 2 && k % 3 === 0
          const topic = retain ? `k/status/${i}-${k % 20}` : `k/${i}`
          // Several in flight at once from one client, as a device's outbox drain sends them.
          const sends = [0, 1, 2].map((j) =>
            p.publishAsync(topic, `${body}-${j}`, { qos, retain }).then(
              () => {
                acked.add(`${body}-${j}`)
                if (retain && j === 2) retained.set(topic, `${body}-${j}`)
              },
              () => {},
            ),
          )
          await Promise.all(sends)
        }
      })
      // The kill lands mid-flood: once some of this round are acknowledged.
      const before = acked.size
      await until(() => acked.size >= before + 300 + round * 150, 30_000)
      await gw.restart()
      dead = true
      for (const p of pubs) p.end(true)
      await Promise.all(floods)
    }
    // The session comes back to the restarted gateway and takes what was kept for it.
    await connect('kept', { clean: false }, got)
    await until(() => [...acked].every((b) => got.has(b)), 30_000).catch(() => {})
    const lost = [...acked].filter((b) => !got.has(b))
    const said = gw.lines.filter((l) => /"level":(40|50|60)/.test(l) || !l.startsWith('{')).join('\n')
    expect({ acked: acked.size, lost: lost.length, examples: lost.slice(0, 5) }, `first connection got ${firstGot.size}; gateway said:\n${said}`).toEqual({ acked: acked.size, lost: 0, examples: [] })
    expect(acked.size).toBeGreaterThan(1_000)
    // Every retained topic with an acknowledged message still has one (that or a later one).
    const statuses = new Map<string, string>()
    const reader = await connect('status-reader')
    reader.on('message', (topic, buf, packet) => {
      if (packet.retain) statuses.set(topic, buf.toString('utf8'))
    })
    await reader.subscribeAsync('k/status/#', { qos: 1 })
    await until(() => [...retained.keys()].every((t) => statuses.has(t)), 20_000).catch(() => {})
    expect([...retained.keys()].filter((t) => !statuses.has(t))).toEqual([])
  }, 90_000)

  it('hostile packets neither stall nor deafen the broker: a witness gets every message, no order wait is given up', async () => {
    gw = await startDeliveryGateway()
    const port = Number(new URL(gw.mqttUrl).port)
    const seen = new Set<string>()
    const witnessSub = await connect('witness-sub')
    witnessSub.on('message', (_t, buf) => seen.add(buf.toString('utf8')))
    await witnessSub.subscribeAsync('w/#', { qos: 1 })
    const witnessPub = await connect('witness-pub')
    const publish = (o: Record<string, unknown>): Buffer =>
      mqttPacket.generate({ cmd: 'publish', qos: 1, dup: false, retain: false, messageId: 1, topic: 'h/x', payload: Buffer.from('x'), ...o } as mqttPacket.IPublishPacket)
    /** A raw client that sends its CONNECT and `packets` in one write, and maybe vanishes right after. */
    const hostile = async (name: string, packets: Buffer[], o: { vanish?: boolean; will?: mqttPacket.IConnectPacket['will'] } = {}): Promise<void> => {
      const s = net.connect(port, '127.0.0.1')
      s.on('error', () => {})
      const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: `hostile-${name}`, keepalive: 0, ...(o.will === undefined ? {} : { will: o.will }) })
      s.write(Buffer.concat([connect, ...packets]))
      if (o.vanish === true) setImmediate(() => s.destroy())
      // While it does its worst, the witness publishes and must get its message.
      const body = `after-${name}`
      await witnessPub.publishAsync('w/x', body, { qos: 1 })
      await until(() => seen.has(body), 20_000)
      s.destroy()
    }
    await hostile('too-many-levels', [publish({ topic: Array(40).fill('l').join('/') })])
    await hostile('retained-delete', [publish({ retain: true, payload: Buffer.alloc(0) })])
    await hostile('sys', [publish({ topic: '$SYS/x/y' })])
    await hostile('qos2-never-released', [publish({ qos: 2 }), publish({ qos: 2, messageId: 2 })])
    await hostile('same-id-thrice', [publish({}), publish({ dup: true }), publish({})])
    await hostile('id-0', [publish({ messageId: 0 })])
    await hostile('vanish-mid-flood', Array.from({ length: 40 }, (_, i) => publish({ messageId: i + 1, retain: i % 2 === 0, topic: `w/r${i}` })), { vanish: true })
    await hostile('will-qos1', [publish({ topic: 'w/before-will' })], { vanish: true, will: { topic: 'w/will', payload: Buffer.from('will'), qos: 1, retain: true } })
    await hostile('big-retained', Array.from({ length: 5 }, (_, i) => publish({ topic: `w/big${i}`, retain: true, messageId: i + 1, payload: Buffer.alloc(1_000_000, 1) })))
    await hostile('oversized', [publish({ payload: Buffer.alloc(1024 * 1024 + 10, 1) })])
    expect(gw.alive()).toBe(true)
    expect(await gw.metric('outpost_gateway_broker_order_waits_given_up_total')).toBe(0)
    expect(await gw.metric('outpost_gateway_broker_held_for_order')).toBe(0)
    // No stack trace per packet in the log.
    expect(gw.lines.filter((l) => /\n\s+at |"stack"/.test(l))).toEqual([])
  }, 60_000)

  it('MQTT 5 clients are refused with a CONNACK, hostile v5 properties included; the broker goes on serving', async () => {
    gw = await startDeliveryGateway()
    const port = Number(new URL(gw.mqttUrl).port)
    const witnessSub = await connect('v5-witness-sub')
    const seen = new Set<string>()
    witnessSub.on('message', (_t, buf) => seen.add(buf.toString('utf8')))
    await witnessSub.subscribeAsync('w/#', { qos: 1 })
    const witnessPub = await connect('v5-witness-pub')
    // MQTT.js with protocolVersion 5: a refusal it can name.
    const refused = await mqtt.connectAsync(gw.mqttUrl, { clientId: 'v5-client', protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 10_000 }).then(
      (c) => (c.end(true), 'accepted'),
      (e: Error) => e.message,
    )
    expect(refused).toMatch(/protocol version/i)
    /** What the broker answers a raw client's bytes with before it closes the connection. */
    const answer = (bytes: Buffer): Promise<Buffer> =>
      new Promise((resolve) => {
        const chunks: Buffer[] = []
        const s = net.connect(port, '127.0.0.1', () => s.write(bytes))
        s.on('data', (d) => chunks.push(d))
        s.on('error', () => {})
        s.on('close', () => resolve(Buffer.concat(chunks)))
        setTimeout(() => s.destroy(), 5_000).unref()
      })
    const v5 = (o: Partial<mqttPacket.IConnectPacket>): Buffer =>
      mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'v5-raw', keepalive: 0, ...o } as mqttPacket.IConnectPacket)
    const frames = {
      plain: v5({}),
      properties: v5({ properties: { sessionExpiryInterval: 0xffffffff, receiveMaximum: 1, maximumPacketSize: 10, topicAliasMaximum: 0xffff, userProperties: { a: 'b'.repeat(1000) } } }),
      // The property length says 200 bytes that are not there.
      'short-properties': Buffer.from([0x10, 0x0e, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x05, 0x02, 0x00, 0x00, 0xc8, 0x01, 0x00, 0x01, 0x78]),
      // A property id no version defines.
      'unknown-property': Buffer.from([0x10, 0x10, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x05, 0x02, 0x00, 0x00, 0x02, 0x7f, 0x00, 0x00, 0x01, 0x78]),
    }
    for (const [name, bytes] of Object.entries(frames)) {
      const got = await answer(bytes)
      // A well-formed v5 CONNECT gets the 3.1.1 refusal "unacceptable protocol version" (0x01);
      // one the packet parser cannot read is a plain hang-up. Never an accepted session.
      expect(got.toString('hex'), name).toBe(name === 'plain' || name === 'properties' ? '20020001' : '')
      const body = `after-v5-${name}`
      await witnessPub.publishAsync('w/x', body, { qos: 1 })
      await until(() => seen.has(body), 20_000)
    }
    expect(gw.alive()).toBe(true)
    expect(gw.lines.filter((l) => /\n\s+at |"stack"/.test(l))).toEqual([])
  }, 60_000)

  it('session queues stay within mqtt.sessionMaxMessages, and drain and clean reconnects bring the count back to 0', async () => {
    gw = await startDeliveryGateway({ mqtt: 'sessionMaxMessages: 200' })
    const away = Array.from({ length: 10 }, (_, i) => `away-${i}`)
    for (const id of away) {
      const c = await connect(id, { clean: false })
      await c.subscribeAsync('q/#', { qos: 1 })
      await c.endAsync()
    }
    const pub = await connect('queue-pub')
    for (let k = 0; k < 300; k++) await pub.publishAsync(`q/${k % 5}`, `${k}`, { qos: 1 })
    expect(await gw.metric('outpost_gateway_session_queued_messages')).toBe(away.length * 200)
    expect(await gw.metric('outpost_gateway_session_dropped_total')).toBe(away.length * 100)
    for (const [i, id] of away.entries()) {
      // Half take their queue (the first 200, those kept); half come back with a clean session, which discards it.
      const clean = i % 2 === 0
      const got = new Map<string, number>()
      const c = await connect(id, { clean }, got)
      if (!clean) await until(() => got.size === 200, 20_000)
      expect(clean ? got.size : [...got.keys()].every((b) => Number(b) < 200)).toBe(clean ? 0 : true)
      await c.endAsync()
    }
    // The last PUBACKs and clears are committed a moment after the client left.
    let queued = NaN
    for (let i = 0; i < 100 && queued !== 0; i++) {
      queued = await gw.metric('outpost_gateway_session_queued_messages')
      if (queued !== 0) await new Promise((r) => setTimeout(r, 100))
    }
    expect(queued).toBe(0)
  }, 60_000)
})

