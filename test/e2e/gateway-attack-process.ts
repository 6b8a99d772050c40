// A real gateway process for the attack tests (test/e2e/gateway-attack-*.test.ts): devices added
// with the CLI, then `node bin/outpost.js gateway --config <file>` with authentication on, ports 0,
// an HTTP token and a data folder of its own; its URLs come from the "gateway ready" log line.
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { outpost, rssOf, startGatewayCli } from '../helpers/gateway-cli.js'
import { until } from '../helpers/wait.js'

/** The HTTP token of every gateway these tests start. */
export const HTTP_TOKEN = 'attack-test-token-0123456789'


export interface GatewayProcess {
  readonly dir: string
  readonly dataDir: string
  readonly configFile: string
  readonly mqttUrl: string
  readonly httpUrl: string
  /** Device id → secret, for the devices added before the start. */
  readonly secrets: Record<string, string>
  readonly child: ChildProcess
  /** Every line the process wrote (stdout and stderr). */
  readonly lines: string[]
  /** The process has not exited. */
  alive(): boolean
  /** Resident memory of the process, bytes (from /proc). */
  rssBytes(): number
  /** A connected MQTT.js client logged in as `id` with its secret. */
  connect(id: string, opts?: IClientOptions): Promise<MqttClient>
  /** GET on the HTTP face with the token. */
  get(route: string): Promise<Response>
  /** SIGTERM, then SIGKILL after 10 s; removes the folder. */
  stop(): Promise<void>
}

// The CLI runner, for the attack tests that import it from here.
export { outpost }

/**
 * Starts a gateway process with `devices` added; `extra` is YAML appended to its config file,
 * `mqtt` more entries of its `mqtt` section (`retainedMaxTopics: 10`, say).
 */
export async function startGatewayProcess(opts: { devices?: string[]; extra?: string; mqtt?: string } = {}): Promise<GatewayProcess> {
  const dir = mkdtempSync(path.join(tmpdir(), 'outpost-attack-'))
  const configFile = path.join(dir, 'gateway.yaml')
  writeFileSync(configFile, `dataDir: data\nmqtt: { port: 0${opts.mqtt === undefined ? '' : `, ${opts.mqtt}`} }\nhttp: { port: 0, token: ${HTTP_TOKEN} }\nlog: { level: info, format: json }\n${opts.extra ?? ''}`)
  const secrets: Record<string, string> = {}
  for (const id of opts.devices ?? []) {
    const r = await outpost(['devices', 'add', id, '--config', configFile, '--json'])
    if (r.code !== 0) throw new Error(`devices add ${id}: ${r.err}`)
    secrets[id] = (JSON.parse(r.out) as { secret: string }).secret
  }
  const lines: string[] = []
  const { child, url, http, exited } = await startGatewayCli(configFile, lines)
  const gw: GatewayProcess = {
    dir,
    dataDir: path.join(dir, 'data'),
    configFile,
    mqttUrl: url,
    httpUrl: http,
    secrets,
    child,
    lines,
    alive: () => !exited(),
    rssBytes: () => rssOf(child.pid),
    connect: (id, o = {}) =>
      new Promise((resolve, reject) => {
        const c = mqtt.connect(gw.mqttUrl, { clientId: id, username: id, password: secrets[id], reconnectPeriod: 0, connectTimeout: 20_000, ...o })
        c.once('connect', () => resolve(c))
        c.once('error', (err) => {
          c.end(true)
          reject(err)
        })
      }),
    get: (route) => fetch(gw.httpUrl + route, { headers: { authorization: `Bearer ${HTTP_TOKEN}` } }),
    async stop() {
      if (!exited()) {
        child.kill('SIGTERM')
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000)
        await until(exited, 15_000).finally(() => clearTimeout(t))
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
  return gw
}
