import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { Aedes } from 'aedes'
import mqtt from 'mqtt'
import type * as v from 'valibot'
import type { probeResult } from '../e2e/chaos/fuzz-contracts.js'
import { freshAedes } from './aedes.js'
import { buildHelperProcess } from './processes.js'
import { commandSlots, FIELD, presenceSlots, rawDecoder, rawFrame, rawId, replySlots } from './raw-wire.js'
import { until } from './wait.js'

/** What the device's `probe` command answers. */
export type Probe = v.InferOutput<typeof probeResult>

/**
 * Resident memory less the free space V8's heap occupies. Under load V8 grows its young
 * generation and keeps the pages after a collection (bounded by its own limits); that is not
 * memory the device holds on to, and it swings RSS by tens of MB. What is left counts live heap,
 * buffers and native memory (SQLite, sockets), where retained frames would show.
 */
export function residentBytes(p: Probe): number {
  return p.rss - (p.heapPhysical - p.heapUsed)
}

/** A reply as it came over the wire. */
export interface RawReply {
  src: unknown
  payload: unknown
  error?: { code: string; message: string; details?: unknown }
}

/** A running `fuzz-device` process, a plain mqtt.js client that calls it, and what can be seen of it from outside. */
export interface DeviceUnderAttack {
  readonly deviceId: string
  /** Client id (and src) of the plain client that sends `call` and `send`. */
  readonly callerId: string
  readonly child: ChildProcess
  readonly dbPath: string
  /** Lines the process wrote to stdout and stderr so far. */
  lines(): number
  /** The last lines it wrote, for failure messages. */
  tail(): string
  /** Whether the process is still running. */
  alive(): boolean
  /** How often the device connected to the broker (aedes 'client' events with its client id). */
  connects(): number
  /**
   * Calls a `target` command with a hand-written frame and waits for the reply; `rawPayload`
   * puts CBOR bytes in the payload's place, `id` is the command's message id (a fresh one by default). @throws when no reply comes within `timeoutMs`
   */
  call(command: string, payload: unknown, opts?: { timeoutMs?: number; rawPayload?: Uint8Array; id?: string }): Promise<RawReply>
  /**
   * Sends a `target` command without waiting; `answer(id)` tells whether a reply came. A command
   * sent after it is answered after it (one connection each way, handled in order), so once a
   * later `call` returned, a missing answer means it was dropped.
   */
  send(command: string, payload: unknown, opts?: { rawPayload?: Uint8Array }): string
  /** The reply to a command of `send`, once it came. */
  answer(id: string): RawReply | undefined
  /** The device's memory (after a full collection) and counters. */
  probe(): Promise<Probe>
  /** The most resident memory the process has had since it started (Linux: VmHWM). */
  peakRssBytes(): number
  /** Bytes of the device database, its WAL included. */
  dbBytes(): number
  /** SIGTERM, and SIGKILL if it has not exited after 10 s; then the caller client ends and the directory goes. */
  stop(): Promise<void>
}

/**
 * Starts the device under attack (test/e2e/chaos/fuzz-device.ts, with --expose-gc) on `broker`
 * with its database in a fresh temporary directory, and waits until it is connected.
 */
export async function startDeviceUnderAttack(broker: { url: string; aedes: Aedes }, o: { deviceId?: string; mode?: string } = {}): Promise<DeviceUnderAttack> {
  const deviceId = o.deviceId ?? 'fuzz-dev'
  const dir = mkdtempSync(path.join(tmpdir(), 'outpost-attack-'))
  const dbPath = path.join(dir, 'device.db')
  let connects = 0
  const onClient = (c: { id: string }): void => {
    if (c.id === deviceId) connects++
  }
  broker.aedes.on('client', onClient)
  const script = await buildHelperProcess('fuzz-device')
  const child = spawn(process.execPath, ['--expose-gc', script, dbPath, broker.url, deviceId, o.mode ?? ''], { stdio: ['ignore', 'pipe', 'pipe'] })
  let lines = 0
  const recent: string[] = []
  let ready = false
  const reader = (): ((d: Buffer) => void) => {
    let partial = ''
    return (d) => {
      const parts = (partial + d.toString()).split('\n')
      partial = parts.pop()!.slice(-4_096)
      for (const line of parts) {
        lines++
        if (line === 'ready') ready = true
        recent.push(line.length > 500 ? `${line.slice(0, 500)}…` : line)
        if (recent.length > 15) recent.shift()
      }
    }
  }
  child.stdout!.on('data', reader())
  child.stderr!.on('data', reader())
  const alive = (): boolean => child.exitCode === null && child.signalCode === null
  const tail = (): string => recent.join('\n')
  try {
    await until(() => ready || !alive(), 30_000)
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
  if (!ready) throw new Error(`device process exited before it was ready:\n${tail()}`)

  const me = `caller-${rawId().slice(0, 8).toLowerCase()}`
  const client = await mqtt.connectAsync(broker.url, { clientId: me, reconnectPeriod: 100 })
  const waiting = new Map<string, (r: RawReply) => void>()
  // Every reply to a command sent with `send`, by command id.
  const replies = new Map<string, RawReply | null>()
  client.on('message', (_topic, payload) => {
    try {
      const a = rawDecoder.decode(payload) as unknown[]
      const r: RawReply = { src: a[3], payload: a[16], error: (a[17] ?? undefined) as RawReply['error'] }
      const corr = a[9] as string
      if (replies.has(corr)) replies.set(corr, r)
      waiting.get(corr)?.(r)
    } catch {
      // not a reply we can read: not ours
    }
  })
  await client.subscribeAsync(`ob/+/rep/${me}`, { qos: 1 })

  const publishCommand = (id: string, command: string, payload: unknown, co: { timeoutMs?: number; rawPayload?: Uint8Array }): void => {
    const deadline = Date.now() + (co.timeoutMs ?? 15_000)
    const frame = rawFrame(commandSlots({ id, src: me, service: 'target', name: command, target: deviceId, deadline, payload }), co.rawPayload === undefined ? {} : { [FIELD.payload]: co.rawPayload })
    client.publish(`ob/${me}/cmd/${deviceId}/target/1/${command}`, frame, { qos: 1 })
  }

  const call = (command: string, payload: unknown, co: { timeoutMs?: number; rawPayload?: Uint8Array; id?: string } = {}): Promise<RawReply> => {
    const timeoutMs = co.timeoutMs ?? 15_000
    const id = co.id ?? rawId()
    return new Promise<RawReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(id)
        reject(new Error(`no reply to target.${command} within ${timeoutMs} ms (device ${alive() ? 'running' : 'exited'}); its last lines:\n${tail()}`))
      }, timeoutMs)
      waiting.set(id, (r) => {
        clearTimeout(timer)
        waiting.delete(id)
        resolve(r)
      })
      publishCommand(id, command, payload, co)
    })
  }

  const size = (p: string): number => {
    try {
      return statSync(p).size
    } catch {
      return 0
    }
  }

  return {
    deviceId,
    callerId: me,
    child,
    dbPath,
    lines: () => lines,
    tail,
    alive,
    connects: () => connects,
    call,
    send(command, payload, so = {}) {
      const id = rawId()
      replies.set(id, null)
      publishCommand(id, command, payload, so)
      return id
    },
    answer: (id) => replies.get(id) ?? undefined,
    async probe() {
      const r = await call('probe', {})
      if (r.error !== undefined) throw new Error(`probe failed: ${r.error.code} ${r.error.message}`)
      return r.payload as Probe
    },
    peakRssBytes: () => {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))
      if (m === null) throw new Error('no VmHWM in /proc: peak memory is read on Linux only')
      return Number(m[1]) * 1024
    },
    dbBytes: () => size(dbPath) + size(`${dbPath}-wal`),
    async stop() {
      broker.aedes.off('client', onClient)
      if (alive()) {
        const exited = new Promise((r) => child.once('exit', r))
        child.kill('SIGTERM')
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000)
        await exited
        clearTimeout(t)
      }
      await client.endAsync(true)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Polls an asynchronous `check` until it holds. @throws after `ms`, with `what` in the message */
export async function eventually(check: () => Promise<boolean>, ms: number, what = 'condition'): Promise<void> {
  const end = Date.now() + ms
  for (;;) {
    if (await check()) return
    if (Date.now() > end) throw new Error(`${what} not met within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** A device `peer-dev` written by hand: announces `peer.ping` (retained presence) and answers each ping with its payload. */
export interface HandWrittenPeer {
  /** Ids of the pings it answered, latest last (at most 16). */
  readonly answered: string[]
  stop(): Promise<void>
}

/** Connects the hand-written peer the device under attack calls (mode `ping`). */
export async function startHandWrittenPeer(url: string): Promise<HandWrittenPeer> {
  const answered: string[] = []
  const peer = await mqtt.connectAsync(url, { clientId: 'peer-dev', reconnectPeriod: 100 })
  peer.on('message', (_topic, buf) => {
    try {
      const a = rawDecoder.decode(buf) as unknown[]
      const id = a[2] as string
      answered.push(id)
      if (answered.length > 16) answered.shift()
      peer.publish(`ob/peer-dev/rep/${a[10] as string}`, rawFrame(replySlots({ src: 'peer-dev', corr: id, replyTo: a[10] as string, payload: a[16] })), { qos: 0 })
    } catch {
      // only the device under attack calls here
    }
  })
  await peer.subscribeAsync('ob/+/cmd/peer-dev/peer/1/ping', { qos: 1 })
  const services = [{ name: 'peer', version: '1', commands: ['ping'], events: [] }]
  await peer.publishAsync('ob/peer-dev/status', rawFrame(presenceSlots({ src: 'peer-dev', services })), { qos: 1, retain: true })
  return { answered, stop: () => peer.endAsync(true) }
}

/**
 * A fresh aedes, the hand-written peer and the device under attack calling it every 100 ms (mode
 * `ping`), once it has called it three times; everything stopped after the test through `cleanup`.
 */
export async function startPingingDevice(cleanup: (fn: () => unknown) => void): Promise<{ broker: Awaited<ReturnType<typeof freshAedes>>; peer: HandWrittenPeer; device: DeviceUnderAttack }> {
  const broker = await freshAedes()
  cleanup(() => broker.close())
  const peer = await startHandWrittenPeer(broker.url)
  cleanup(() => peer.stop())
  const device = await startDeviceUnderAttack(broker, { mode: 'ping' })
  cleanup(() => device.stop())
  await eventually(async () => (await device.probe()).pingsOk >= 3, 20_000, 'the device calling its peer')
  return { broker, peer, device }
}

