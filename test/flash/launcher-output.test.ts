// The device launcher's own output on a terminal that stops taking it (Ctrl-S, a serial console's
// XOFF): the launcher writes its lines and passes on its device's. It must go on watching its
// device (whose output it relays, so the device goes on too) and stop on SIGTERM.
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { generateSigningKeys } from '../../build/index.js'
import { flashBundle } from '../../build/flash.js'
import { tempDirs } from '../build/build-helpers.js'
import { runOnStoppedTerminal } from '../helpers/stopped-terminal.js'
import { until } from '../helpers/wait.js'
import { fakeBundle, startLauncher } from './flash-helpers.js'

const temp = tempDirs('launcher-output')

// A chatty device: JSON lines written with blocking writes (it stops when nobody takes its output,
// so its heartbeats stop when the launcher stops relaying), and a heartbeat file.
const CHATTY = `
import { appendFileSync, writeSync } from 'node:fs'
const line = (msg) => JSON.stringify({ level: 30, time: Date.now(), device: 'chatty', msg, pad: 'x'.repeat(200) }) + '\\n'
setInterval(() => { for (let i = 0; i < 20; i++) writeSync(1, line('chatty')) }, 5)
setInterval(() => appendFileSync(process.env.BEAT_FILE, '.'), 50)
process.on('SIGTERM', () => process.exit(0))
`

describe('the launcher on a terminal that stops taking output', () => {
  it('goes on relaying (its device keeps running), stops on SIGTERM, counts the lines dropped, tears none', async () => {
    const keys = generateSigningKeys()
    const bundle = await fakeBundle(temp(), CHATTY, keys.privatePem, 'chatty')
    const dev = temp()
    await flashBundle(bundle, { to: dev, key: keys.publicPem })
    const run = await runOnStoppedTerminal([process.execPath, path.join(dev, 'launcher.mjs')], { BEAT_FILE: path.join(temp(), 'beats'), OUTPOST_LAUNCHER_READY_MS: '600000' })
    // Before: the launcher wrote to the terminal through process.stdout, and stopped with it: its
    // device's output piled up unread, the device stopped, and SIGTERM waited for the terminal.
    expect(run.beatsWhileStopped[1], `frozen: heartbeats ${run.beatsWhileStopped.join(' -> ')}`).toBeGreaterThan(run.beatsWhileStopped[0])
    expect(run.exitCode, `stderr: ${run.stderr}`).toBe(0)
    expect(run.exitMs).toBeLessThan(5_000)
    const lines = run.lines.map((l) => JSON.parse(l) as { device?: string; msg: string })
    expect(lines.filter((l) => l.device === 'chatty').length).toBeGreaterThan(100)
    expect(lines.some((l) => l.device === 'launcher' && /^started slot a/.test(l.msg))).toBe(true)
    expect(lines.some((l) => l.device === 'launcher' && /^\d+ log lines? dropped: the output was not read, or too slowly$/.test(l.msg))).toBe(true)
  }, 60_000)

  it('passes on the output of a device that writes no line ends in pieces of 1 MiB, instead of keeping it all in memory', async () => {
    const keys = generateSigningKeys()
    // 64 KiB at a time, never a line end (a device printing a progress bar, or garbage).
    const flood = "const chunk = 'x'.repeat(65_536); setInterval(() => process.stdout.write(chunk), 5); process.on('SIGTERM', () => process.exit(0))"
    const dev = temp()
    await flashBundle(await fakeBundle(temp(), flood, keys.privatePem, 'flood'), { to: dev, key: keys.publicPem })
    const launcher = startLauncher(dev, { OUTPOST_LAUNCHER_READY_MS: '600000' })
    try {
      // Before: nothing came out; the launcher kept the text waiting for its line end (750 MB in 30 s).
      await until(() => launcher.lines.filter((l) => /^x+$/.test(l)).length >= 3, 20_000).catch(() => expect.fail(`no pieces passed on; lines: ${launcher.lines.map((l) => l.slice(0, 80)).join('\n')}`))
      const pieces = launcher.lines.filter((l) => /^x+$/.test(l))
      for (const p of pieces) expect(p.length).toBeLessThanOrEqual((1 << 20) + 65_536)
    } finally {
      launcher.child.kill('SIGTERM')
      expect((await launcher.exited).code).toBe(0)
    }
  }, 60_000)
})
