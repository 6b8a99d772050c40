// A real gateway process for the delivery attack tests (gateway-attack-delivery.test.ts):
// `node bin/outpost.js gateway --config <file>` with authentication off, broker state in
// broker.db, MQTT and HTTP on free ports; its URLs come from the "gateway ready" log line.
// Unlike gateway-attack-process.ts it takes the whole `mqtt:` section, for the session queue bounds.
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { rssOf, startGatewayCli } from '../helpers/gateway-cli.js'
import { until } from '../helpers/wait.js'


export interface DeliveryGateway {
  readonly dir: string
  readonly mqttUrl: string
  readonly httpUrl: string
  readonly child: ChildProcess
  /** Every line the process wrote (stdout and stderr), over all its starts. */
  readonly lines: string[]
  alive(): boolean
  /** Resident memory of the process, bytes (from /proc). */
  rssBytes(): number
  /** One value of /metrics (the sum over its label sets), NaN when absent. */
  metric(name: string): Promise<number>
  /** SIGKILL, then a new process on the same folder and ports. */
  restart(): Promise<void>
  /** SIGTERM (SIGKILL after 10 s); removes the folder. */
  stop(): Promise<void>
}

/** Starts a gateway; `mqtt` is YAML flow-mapping entries added to `mqtt: { port: 0, … }`; `persistence` sqlite unless told. */
export async function startDeliveryGateway(opts: { mqtt?: string; persistence?: 'sqlite' | 'memory' } = {}): Promise<DeliveryGateway> {
  const dir = mkdtempSync(path.join(tmpdir(), 'outpost-attack-delivery-'))
  const configFile = path.join(dir, 'gateway.yaml')
  const lines: string[] = []
  let child!: ChildProcess
  let exited = (): boolean => false
  let mqttPort = 0
  let httpPort = 0
  const write = (): void =>
    writeFileSync(
      configFile,
      `dataDir: data\npersistence: ${opts.persistence ?? 'sqlite'}\nauth: { enabled: false }\nmqtt: { port: ${mqttPort}${opts.mqtt === undefined ? '' : `, ${opts.mqtt}`} }\nhttp: { enabled: true, port: ${httpPort} }\nlog: { level: info, format: json }\n`,
    )
  const launch = async (): Promise<{ url: string; http: string }> => {
    write()
    const started = await startGatewayCli(configFile, lines)
    child = started.child
    exited = started.exited
    return started
  }
  const first = await launch()
  // The same ports on a restart: clients come back to the address they knew.
  mqttPort = Number(new URL(first.url).port)
  httpPort = Number(new URL(first.http).port)
  const gw: DeliveryGateway = {
    dir,
    mqttUrl: first.url,
    httpUrl: first.http,
    get child() {
      return child
    },
    lines,
    alive: () => !exited(),
    rssBytes: () => rssOf(child.pid),
    async metric(name) {
      const text = await (await fetch(`${gw.httpUrl}/metrics`)).text()
      let sum = NaN
      for (const l of text.split('\n')) {
        if (!l.startsWith(name) || (l[name.length] !== ' ' && l[name.length] !== '{')) continue
        sum = (Number.isNaN(sum) ? 0 : sum) + Number(l.slice(l.lastIndexOf(' ') + 1))
      }
      return sum
    },
    async restart() {
      const c = child
      c.kill('SIGKILL')
      await until(() => exited(), 15_000)
      await launch()
    },
    async stop() {
      if (!exited()) {
        child.kill('SIGTERM')
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000)
        await until(() => exited(), 15_000).finally(() => clearTimeout(t))
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
  return gw
}
