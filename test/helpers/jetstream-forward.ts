// A gateway's forwarding to a JetStream stream of its own, for tests that run a gateway process:
// a unique stream and subject prefix, a temp data folder, and a NATS connection to count what
// arrived. Everything is removed after the test (through the test file's cleanupAfterEach).
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream'
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node'
import type { ForwardConfig } from '../../gateway/forward/forward-config.js'

export interface JetStreamForward {
  tag: string
  stream: string
  dir: string
  nc: NatsConnection
  jsm: JetStreamManager
  /** Routes every event of devices `meter-*` to target `js`: subjects `<prefix><tag>.{device}.{event}`. */
  forward: ForwardConfig
}

/** Sets up a stream `<STREAM><tag>` on the local NATS (127.0.0.1:4222) and the forward config that fills it. */
export async function jetstreamForward(cleanup: (fn: () => unknown) => void, names: { stream: string; subject: string; dir: string }): Promise<JetStreamForward> {
  const tag = randomBytes(4).toString('hex')
  const stream = `${names.stream}${tag}`
  const dir = mkdtempSync(path.join(tmpdir(), names.dir))
  cleanup(() => rmSync(dir, { recursive: true, force: true }))
  const nc = await natsConnect({ servers: '127.0.0.1:4222' })
  cleanup(() => nc.close())
  const jsm = await jetstreamManager(nc)
  cleanup(() => jsm.streams.delete(stream).catch(() => {}))
  const forward: ForwardConfig = {
    targets: {
      js: {
        type: 'nats', servers: ['nats://127.0.0.1:4222'], encoding: 'cbor', window: 256, confirmTimeoutMs: 5_000, maxBytes: 1 << 30, whenFull: 'refuse',
        stream: { name: stream, subjects: [`${names.subject}${tag}.>`], create: true, duplicateWindowMs: 1_800_000 },
        subject: `${names.subject}${tag}.{device}.{event}`,
      },
    },
    routes: [{ events: ['#'], devices: ['meter-*'], to: ['js'] }],
  }
  return { tag, stream, dir, nc, jsm, forward }
}
