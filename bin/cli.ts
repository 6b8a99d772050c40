import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { startGateway } from '../gateway/index.js'
import { isOutpostError } from '../runtime/index.js'
import { JOBS_HELP, runJobsCommand } from './jobs.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

const HELP = `outpost — message-driven services for edge devices

Usage:
  outpost demo [--port N] [--duration S] [--outage-after S] [--outage S]
                                            gateway with embedded broker + two demo devices (thermo, display);
                                            after 10 s the broker stops for 6 s and comes back (--outage 0: never)
  outpost gateway [--port N] [--host H]     run the gateway (embedded aedes broker; default port 1883)
  outpost device <name> [--url URL] [--id ID]
                                            run devices/<name>/main.ts against a broker
  outpost jobs <command> --db FILE          operate the durable queues in a device database
                                            (queues, status, dead, redrive, purge, pause, resume, cancel;
                                            \`outpost jobs help\` for details)
  outpost --help                            this text

Options:
  --port N       MQTT port (demo: 0 = a free port, the default; gateway: 1883)
  --host H       interface to bind (default 127.0.0.1)
  --duration S   stop the demo after S seconds (default: run until Ctrl-C)
  --outage-after S, --outage S
                 when the demo's broker goes away, and for how long (default 10 and 6)
  --url URL      broker for a device (default mqtt://127.0.0.1:1883, or OUTPOST_MQTT_URL)
  --id ID        device id (or OUTPOST_DEVICE_ID)

Environment: OUTPOST_MQTT_PORT, OUTPOST_MQTT_URL, OUTPOST_DEVICE_ID, OUTPOST_LOG_LEVEL, OUTPOST_DATA_DIR
`

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    help: { type: 'boolean', short: 'h' },
    port: { type: 'string' },
    host: { type: 'string' },
    duration: { type: 'string' },
    'outage-after': { type: 'string' },
    outage: { type: 'string' },
    url: { type: 'string' },
    id: { type: 'string' },
    db: { type: 'string' },
    limit: { type: 'string' },
    json: { type: 'boolean' },
  },
})

const fail = (err: unknown): never => {
  if (isOutpostError(err)) console.error(`outpost: ${err.code}: ${err.message}`)
  else console.error(`outpost: ${(err as Error).message ?? String(err)}`)
  process.exit(1)
}

/** Runs a device's main.ts in its own process, prefixing its log lines with its id. */
function runDevice(name: string, env: Record<string, string>, print: (line: string) => void): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', `devices/${name}/main.ts`], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let buf = ''
  const onData = (chunk: Buffer): void => {
    buf += chunk.toString()
    let nl: number
    while ((nl = buf.indexOf('\n')) >= 0) {
      print(formatLine(buf.slice(0, nl)))
      buf = buf.slice(nl + 1)
    }
  }
  child.stdout!.on('data', onData)
  child.stderr!.on('data', onData)
  return child
}

const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'device', 'service', 'version', 'msgId', 'bridge'])
/** Turns a pino JSON line into one readable line. */
function formatLine(line: string): string {
  try {
    const o = JSON.parse(line) as Record<string, unknown>
    const extra = Object.entries(o)
      .filter(([k]) => !SKIP.has(k))
      .map(([k, val]) => `${k}=${typeof val === 'object' ? JSON.stringify(val) : String(val)}`)
      .join(' ')
    const level = Number(o.level) >= 50 ? 'ERROR ' : Number(o.level) >= 40 ? 'WARN ' : ''
    return `[${String(o.device ?? '?').padEnd(9)}] ${level}${String(o.msg ?? '')}${extra ? `  ${extra}` : ''}`
  } catch {
    return line
  }
}

async function demo(): Promise<void> {
  const port = Number(values.port ?? process.env.OUTPOST_MQTT_PORT ?? 0)
  const print = (line: string): void => console.log(line)
  const gwLog = pino({ base: { device: 'gateway' } }, { write: (s: string) => print(formatLine(s.trimEnd())) })
  const gateway = await startGateway({ port, host: values.host, logger: gwLog }).catch(fail)
  print(`outpost demo: broker at ${gateway.broker.url}; starting devices thermo-1 and display-1 (Ctrl-C stops)`)
  const env = { OUTPOST_MQTT_URL: gateway.broker.url, OUTPOST_SAMPLE_MS: process.env.OUTPOST_SAMPLE_MS ?? '2000' }
  const children = [
    runDevice('display', { ...env, OUTPOST_DEVICE_ID: 'display-1' }, print),
    runDevice('thermo', { ...env, OUTPOST_DEVICE_ID: 'thermo-1' }, print),
  ]
  let stopping = false
  const stop = async (): Promise<void> => {
    if (stopping) return
    stopping = true
    print('outpost demo: stopping devices')
    await Promise.all(children.map((c) => new Promise<void>((r) => {
      if (c.exitCode !== null) return r()
      c.once('exit', () => r())
      c.kill('SIGTERM')
    })))
    await gateway.close()
    print('outpost demo: stopped')
    process.exit(0)
  }
  process.on('SIGINT', () => void stop())
  process.on('SIGTERM', () => void stop())
  if (values.duration !== undefined) setTimeout(() => void stop(), Number(values.duration) * 1_000)
  // The offline promise, shown: the broker goes away for a while and comes back with its state.
  const outageMs = Number(values.outage ?? 6) * 1_000
  if (outageMs > 0) {
    setTimeout(() => {
      if (stopping) return
      print(`outpost demo: stopping the broker for ${outageMs / 1_000} s; the devices keep sampling, and what they produce waits in their outboxes`)
      void gateway.interrupt(outageMs).then(() => {
        if (!stopping) print('outpost demo: broker back; the backlog drains in order (results arrive late, once each)')
      })
    }, Number(values['outage-after'] ?? 10) * 1_000).unref()
  }
}

async function gateway(): Promise<void> {
  const port = Number(values.port ?? process.env.OUTPOST_MQTT_PORT ?? 1883)
  const gw = await startGateway({ port, host: values.host }).catch(fail)
  const stop = (): void => void gw.close().then(() => process.exit(0))
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}

function device(): void {
  const name = positionals[1]
  if (name === undefined || !existsSync(`${ROOT}devices/${name}/main.ts`)) fail(new Error(`unknown device "${name ?? ''}"; see devices/`))
  const env: Record<string, string> = {}
  if (values.url !== undefined) env.OUTPOST_MQTT_URL = values.url
  if (values.id !== undefined) env.OUTPOST_DEVICE_ID = values.id
  const child = runDevice(name!, env, (l) => console.log(l))
  const forward = (sig: NodeJS.Signals): void => void child.kill(sig)
  process.on('SIGINT', forward)
  process.on('SIGTERM', forward)
  child.on('exit', (code) => process.exit(code ?? 0))
}

const command = positionals[0]
if (values.help === true || command === undefined || command === 'help') {
  console.log(HELP)
} else if (command === 'demo') {
  await demo()
} else if (command === 'gateway') {
  await gateway()
} else if (command === 'device') {
  device()
} else if (command === 'jobs') {
  try {
    console.log(runJobsCommand(positionals.slice(1), { db: values.db, limit: values.limit, json: values.json }))
  } catch (err) {
    if (isOutpostError(err) && err.code === 'INVALID_CONFIG') console.error(JOBS_HELP)
    fail(err)
  }
} else {
  console.error(`outpost: unknown command "${command}"\n`)
  console.log(HELP)
  process.exit(2)
}
