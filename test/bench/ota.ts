// Issue 15's over-the-air figure (`npm run bench -- --only ota`): a 1 MiB bundle (the display's,
// padded) sent through the gateway's HTTP command API to a device run by its launcher, in chunks,
// a few in flight: the transfer's bytes per second (begin to the last chunk acknowledged), and the
// whole flash, from begin to the new bundle reported ready and kept. The gateway and the sender
// run in this process; the device (launcher and bundle) in its own.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createPrivateKey, randomBytes } from 'node:crypto'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pino } from 'pino'
import { describeFiles, makeManifest, MANIFEST_FILE, manifestBytes, SIGNATURE_FILE, type Manifest } from '../../build/manifest.js'
import { otaSession } from '../../build/ota.js'
import { signManifest } from '../../build/signing.js'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway } from '../../gateway/index.js'
import type { BenchResult } from './measure.js'

const ROOT = `${process.cwd()}/` // bin/run-bench.js runs from the repository root
const BUNDLE_BYTES = 1024 * 1024
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** `node bin/outpost.js …` (the build and the flash to a folder load build/ from the sources, which this bundled bench cannot). */
function outpost(args: string[]): void {
  const r = spawnSync(process.execPath, ['bin/outpost.js', ...args], { cwd: ROOT, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`outpost ${args.join(' ')}: ${r.stderr}`)
}

/** A copy of bundle `from` in `to`, its files padded to BUNDLE_BYTES with random bytes (pad.bin), built at `buildTime`, signed anew. */
async function padded(from: string, to: string, privatePem: string, buildTime: string): Promise<string> {
  cpSync(from, to, { recursive: true })
  const m = JSON.parse(readFileSync(path.join(to, MANIFEST_FILE), 'utf8')) as Manifest
  writeFileSync(path.join(to, 'pad.bin'), randomBytes(Math.max(0, BUNDLE_BYTES - m.files.reduce((n, f) => n + f.size, 0))))
  const bytes = manifestBytes(makeManifest({ device: m.device, version: m.version, buildTime, entry: m.entry, addon: m.addon }, await describeFiles(to)))
  writeFileSync(path.join(to, MANIFEST_FILE), bytes)
  writeFileSync(path.join(to, SIGNATURE_FILE), signManifest(bytes, createPrivateKey(privatePem)))
  return to
}

/** Flashes `rounds` fresh 1 MiB bundles over the air at each chunk size. */
export async function benchOta(rounds: number, chunkKbs: number[] = [64, 176], inFlight = 4): Promise<BenchResult[]> {
  const work = mkdtempSync(path.join(tmpdir(), 'outpost-bench-ota-'))
  const gw = await startGateway({ config: { ...defaultGatewayConfig(), http: { enabled: true, host: '127.0.0.1', port: 0 } }, port: 0, logger: pino({ level: 'silent' }) })
  let launcher: ChildProcess | undefined
  try {
    outpost(['keys', 'generate', '--out', path.join(work, 'keys')])
    const privatePem = readFileSync(path.join(work, 'keys', 'signing-key.pem'), 'utf8')
    outpost(['build', 'display', '--key', path.join(work, 'keys', 'signing-key.pem'), '--out', path.join(work, 'built'), '--build-time', '2025-01-01T00:00:00Z'])
    const dev = path.join(work, 'device')
    cpSync(path.join(work, 'built', 'display'), path.join(work, 'v0'), { recursive: true })
    mkdirSync(dev)
    outpost(['flash', path.join(work, 'v0'), '--to', dev, '--key', path.join(work, 'keys', 'signing-key.pub.pem')])
    // Kept as soon as it is ready: the figure is the transfer and the restart, not the launcher's probation.
    launcher = spawn(process.execPath, [path.join(dev, 'launcher.mjs')], {
      cwd: ROOT, env: { ...process.env, OUTPOST_MQTT_URL: gw.broker.url, OUTPOST_DEVICE_ID: 'bench-ota', OUTPOST_LAUNCHER_PROBATION_MS: '1' }, stdio: ['ignore', 'ignore', 'inherit'],
    })
    const out: BenchResult[] = []
    let n = 0
    for (const kb of chunkKbs) {
      const rates: number[] = []
      const whole: number[] = []
      for (let round = 0; round < rounds; round++) {
        const dir = await padded(path.join(work, 'built', 'display'), path.join(work, `v${++n}`), privatePem, new Date(Date.UTC(2025, 1, n)).toISOString())
        const session = otaSession(dir, { gateway: gw.http!.url, device: 'bench-ota', chunkBytes: kb * 1024, inFlight, pollMs: 50 })
        await session.verify()
        // The device comes up (first round) or back (after the last round's restart).
        for (let t = Date.now(); ; await new Promise((r) => setTimeout(r, 100))) {
          try {
            await session.begin()
            break
          } catch (err) {
            if (Date.now() - t > 30_000) throw err
          }
        }
        const t0 = performance.now()
        const p = await session.transfer()
        const t1 = performance.now()
        await session.commit()
        const r = await session.outcome()
        if (r.outcome !== 'success') throw new Error(`bench bundle rolled back: ${r.reason}`)
        if (p.bytesTotal !== BUNDLE_BYTES) throw new Error(`the bench bundle is ${p.bytesTotal} bytes, not 1 MiB`)
        rates.push(p.bytesTotal / ((t1 - t0) / 1000))
        whole.push(performance.now() - t0)
        rmSync(dir, { recursive: true, force: true })
      }
      const rate = median(rates)
      out.push({
        system: `outpost-gateway-http-${kb}k`,
        workload: 'ota-transfer-1mb',
        concurrency: inFlight,
        ops_per_s: Math.round(rate / (kb * 1024) * 10) / 10,
        p50_us: null,
        p99_us: null,
        extra: { bytes_per_s: Math.round(rate), mb_per_s: Math.round((rate / 1024 / 1024) * 100) / 100, chunk_kb: kb, flash_to_ready_ms: Math.round(median(whole)), rounds },
      })
    }
    return out
  } finally {
    launcher?.kill('SIGTERM')
    if (launcher !== undefined && launcher.exitCode === null) await new Promise((r) => launcher!.once('exit', r))
    await gw.close()
    rmSync(work, { recursive: true, force: true })
  }
}
