// The device launcher's own output on a terminal that stops taking it (Ctrl-S, a serial console's
// XOFF): the launcher writes its lines and passes on its device's. It must go on watching its
// device (whose output it relays, so the device goes on too) and stop on SIGTERM.
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { generateSigningKeys } from '../../build/index.js'
import { flashBundle } from '../../build/flash.js'
import { tempDirs } from '../build/build-helpers.js'
import { runOnStoppedTerminal } from '../helpers/stopped-terminal.js'
import { fakeBundle } from './flash-helpers.js'

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
})
