// Command round trip across three processes (caller, device, broker) over aedes on loopback.
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { BenchResult, LoadOptions } from './measure.js'
import type { SystemName } from './procs/mqtt-systems.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const PROCS = 'test/bench/procs'

function start(script: string, args: string[]): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', `${PROCS}/${script}`, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
}

function firstLine(child: ChildProcess, what: string, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = ''
    const t = setTimeout(() => reject(new Error(`${what}: no output in ${timeoutMs} ms`)), timeoutMs)
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString()
      const nl = buf.indexOf('\n')
      if (nl >= 0) {
        clearTimeout(t)
        resolve(buf.slice(0, nl))
      }
    })
    child.once('exit', (code) => {
      clearTimeout(t)
      reject(new Error(`${what} exited with ${code}`))
    })
  })
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  child.kill('SIGTERM')
  const t = setTimeout(() => child.kill('SIGKILL'), 5_000)
  await exited
  clearTimeout(t)
}

const LABEL: Record<SystemName, string> = { raw: 'raw-mqttjs-cbor', outpost: 'outpost-mqtt', moleculer: 'moleculer-0.15-mqtt' }

/** Measures each system at each concurrency with a fresh broker and device process. */
export async function benchCrossProcess(load: Omit<LoadOptions, 'concurrency'>, concurrencies: number[]): Promise<BenchResult[]> {
  const out: BenchResult[] = []
  for (const system of ['raw', 'outpost', 'moleculer'] as SystemName[]) {
    for (const concurrency of concurrencies) {
      const broker = start('broker.ts', [])
      try {
        const { url } = JSON.parse(await firstLine(broker, 'broker')) as { url: string }
        const device = start('responder.ts', [system, url])
        try {
          await firstLine(device, `${system} responder`)
          const caller = start('caller.ts', [system, url, String(concurrency), String(load.durationMs), String(load.warmupMs)])
          const r = JSON.parse(await firstLine(caller, `${system} caller`, 120_000)) as { ops_per_s: number; p50_us: number; p99_us: number }
          await stop(caller)
          out.push({ system: LABEL[system], workload: 'mqtt-command-roundtrip-3proc', concurrency, ...r })
        } finally {
          await stop(device)
        }
      } finally {
        await stop(broker)
      }
    }
  }
  return out
}
