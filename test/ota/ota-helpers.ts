// Shared by the over-the-air tests: a real gateway in this process (MQTT and HTTP on free ports,
// a bearer token, device authentication off), the thermo bundle flashed to a folder outside the
// repository and run by its launcher as a process of its own, connected to the gateway's broker;
// `outpost flash … --device … --gateway …` run as a user runs it; a counting HTTP proxy in front of
// the gateway, to see which commands the CLI sent.
import { spawn } from 'node:child_process'
import { createPrivateKey } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { pino } from 'pino'
import { buildDevice, generateSigningKeys } from '../../build/index.js'
import { flashBundle } from '../../build/flash.js'
import { otaCaller, type OtaCall, type OtaStatus } from '../../build/ota.js'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway, type Gateway } from '../../gateway/index.js'
import { tempDirs } from '../build/build-helpers.js'
import { startLauncher } from '../flash/flash-helpers.js'
import type { TestProcess } from '../helpers/device-process.js'
import { CLEAN_GATEWAY_ENV } from '../helpers/gateway-cli.js'

export const TOKEN = 'ota-test-token-0123456789'
export { readJson, variant, fakeBundle } from '../flash/flash-helpers.js'

/** One device under test: its folder, its launcher process, and the gateway it is connected to. */
export interface OtaRig {
  keys: ReturnType<typeof generateSigningKeys>
  /** The thermo bundle, built and signed (version 0.1.0, built 2025-01-01). */
  thermo: string
  dev: string
  gateway: Gateway
  /** The gateway's HTTP URL. */
  http: string
  deviceId: string
  launcher: TestProcess
  /** ota@1 of the device, called through the gateway's HTTP API. */
  call: OtaCall
  temp: () => string
  /** The device's ota status, once it answers (it may be restarting). */
  status(): Promise<OtaStatus>
  close(): Promise<void>
}

/** Builds the thermo, flashes it to a new device folder, starts a gateway and the device's launcher, and waits until ota@1 answers through the gateway. */
export async function otaRig(prefix: string, launcherEnv: Record<string, string> = {}): Promise<OtaRig> {
  const temp = tempDirs(prefix)
  const keys = generateSigningKeys()
  const thermo = (await buildDevice('thermo', { outDir: temp(), signingKey: createPrivateKey(keys.privatePem), buildTime: '2025-01-01T00:00:00.000Z' })).dir
  const dev = temp()
  await flashBundle(thermo, { to: dev, key: keys.publicPem })
  const config = defaultGatewayConfig()
  config.http = { enabled: true, host: '127.0.0.1', port: 0, token: TOKEN }
  config.auth.enabled = false
  const gateway = await startGateway({ config, port: 0, logger: pino({ level: 'silent' }) })
  const deviceId = `thermo-${prefix}`
  const launcher = startLauncher(dev, { OUTPOST_MQTT_URL: gateway.broker.url, OUTPOST_DEVICE_ID: deviceId, OUTPOST_SAMPLE_MS: '60000', ...launcherEnv })
  const httpUrl = gateway.http!.url
  const call = otaCaller({ gateway: httpUrl, device: deviceId, token: TOKEN })
  const status = async (): Promise<OtaStatus> => {
    let s: OtaStatus | undefined
    const end = Date.now() + 30_000
    while (s === undefined) {
      s = await call<OtaStatus>('status', {}).catch((err: unknown) => {
        if (Date.now() > end) throw err
        return undefined
      })
      if (s === undefined) await new Promise((r) => setTimeout(r, 100))
    }
    return s
  }
  await launcher.waitFor('"msg":"ready"')
  // The first bundle is on trial too until its probation (1 s here, see startLauncher) has passed.
  await launcher.waitFor('is ready: kept')
  await status()
  return {
    keys, thermo, dev, gateway, http: httpUrl, deviceId, launcher, call, temp, status,
    async close() {
      await launcher.kill('SIGTERM')
      await gateway.close()
    },
  }
}

/** A finished CLI run. */
export interface CliRun {
  code: number | null
  signal: NodeJS.Signals | null
  out: string
  err: string
}

/** A running `node bin/outpost.js …`, its output so far. */
export interface CliProcess {
  out(): string
  err(): string
  kill(signal: NodeJS.Signals): void
  done: Promise<CliRun>
}

/** Starts `node bin/outpost.js <args>` with a clean environment plus `env`. */
export function startCli(args: string[], env: Record<string, string> = {}): CliProcess {
  const child = spawn(process.execPath, ['bin/outpost.js', ...args], { env: { ...process.env, ...CLEAN_GATEWAY_ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c))
  const done = new Promise<CliRun>((resolve) => child.once('close', (code, signal) => resolve({ code, signal, out, err })))
  return { out: () => out, err: () => err, kill: (s) => void child.kill(s), done }
}

/** Runs `node bin/outpost.js <args>` to its end. */
export const cli = (args: string[], env: Record<string, string> = {}): Promise<CliRun> => startCli(args, env).done

/** `outpost flash <bundle> --device <id> --gateway <url> --token T` plus `extra`. */
export const otaArgs = (rig: OtaRig, bundle: string, extra: string[] = [], gateway = rig.http): string[] =>
  ['flash', bundle, '--device', rig.deviceId, '--gateway', gateway, '--token', TOKEN, ...extra]

/** An HTTP proxy to `target` that counts the requests per path (the commands the CLI sent). */
export async function countingProxy(target: string): Promise<{ url: string; count: (command: string) => number; reset(): void; close(): Promise<void> }> {
  const counts = new Map<string, number>()
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const command = path.posix.basename((req.url ?? '').split('?')[0]!)
      counts.set(command, (counts.get(command) ?? 0) + 1)
      const headers: Record<string, string> = {}
      for (const h of ['authorization', 'content-type']) if (typeof req.headers[h] === 'string') headers[h] = req.headers[h]
      fetch(`${target}${req.url}`, { method: req.method, headers, body: req.method === 'POST' ? Buffer.concat(chunks) : undefined })
        .then(async (r) => {
          res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' })
          res.end(Buffer.from(await r.arrayBuffer()))
        })
        .catch(() => res.destroy())
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    count: (command) => counts.get(command) ?? 0,
    reset: () => counts.clear(),
    close: () => new Promise<void>((r) => {
      server.closeAllConnections()
      server.close(() => r())
    }),
  }
}

/** Waits until the device's ota status satisfies `check`. */
export async function statusUntil(rig: OtaRig, check: (s: OtaStatus) => boolean, ms = 30_000): Promise<OtaStatus> {
  let last: OtaStatus | undefined
  const end = Date.now() + ms
  for (;;) {
    last = await rig.status()
    if (check(last)) return last
    if (Date.now() > end) throw new Error(`the device's ota status never satisfied the check; last: ${JSON.stringify(last)}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
