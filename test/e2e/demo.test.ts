// The README's main command, end to end: gateway + two device processes over MQTT.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)

describe('the demo (npm start)', () => {
  it('runs a gateway and two devices that exchange commands and events, rides out a broker outage, then stops cleanly', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'outpost-demo-'))
    const { stdout } = await run(process.execPath, ['bin/outpost.js', 'demo', '--port', '0', '--duration', '9', '--outage-after', '3', '--outage', '2', '--log-format', 'pretty'], {
      env: { ...process.env, OUTPOST_SAMPLE_MS: '300', OUTPOST_DATA_DIR: dataDir },
      timeout: 40_000,
    }).finally(() => rmSync(dataDir, { recursive: true, force: true }))
    expect(stdout).toMatch(/broker at mqtt:\/\/127\.0\.0\.1:\d+/)
    expect(stdout).toMatch(/\[display-1\] display shows "[\d.]+ °C"/) // command thermo → display
    expect(stdout).toMatch(/\[display-1\] heard a reading event/) // event thermo → display
    expect(stdout).toMatch(/\[thermo-1 \] reading shown on display/) // reply display → thermo
    // schedule → event → queue → worker → result event, heard on the display
    expect(stdout).toMatch(/\[display-1\] heard a sample result .*readings=\d+ attempt=1/)
    // The outage: announced, ridden out, and what was produced meanwhile arrives late, after it.
    const down = stdout.indexOf('[demo     ] stopping the broker for 2 s')
    const back = stdout.indexOf('[demo     ] broker back')
    expect(down).toBeGreaterThan(0)
    expect(back).toBeGreaterThan(down)
    expect(stdout.slice(back)).toMatch(/\[display-1\] heard a sample result .*deliveredLateMs=\d+/)
    expect(stdout).toContain('[demo     ] stopped')
    expect(stdout).not.toMatch(/ERROR/)
  }, 50_000)

  it('rides out its port being taken during the outage: one line, then the broker is back once the port is free', async () => {
    const net = await import('node:net')
    const { freePort } = await import('../helpers/wait.js')
    const { startProcess } = await import('../helpers/device-process.js')
    const dataDir = mkdtempSync(path.join(tmpdir(), 'outpost-demo-'))
    const port = await freePort()
    const demo = startProcess('bin/outpost.js', ['demo', '--port', String(port), '--outage-after', '2', '--outage', '3', '--log-format', 'pretty'], { OUTPOST_SAMPLE_MS: '300', OUTPOST_DATA_DIR: dataDir })
    // Another process takes the port while the broker is down; it hangs up on whoever connects.
    const holder = net.createServer((socket) => socket.destroy())
    try {
      await demo.waitFor('stopping the broker for 3 s')
      for (;;) {
        const ok = await new Promise<boolean>((r) => {
          holder.once('error', () => r(false))
          holder.listen(port, '127.0.0.1', () => r(true))
        })
        if (ok) break
        await new Promise((r) => setTimeout(r, 20))
      }
      await demo.waitFor('broker cannot take its port back')
      await new Promise<void>((r) => holder.close(() => r()))
      await demo.waitFor('[demo     ] broker back')
      await demo.kill('SIGTERM')
      expect((await demo.exited).code).toBe(0)
      const out = demo.lines.join('\n')
      expect(out).not.toContain('    at ')
      expect(demo.lines.filter((l) => l.includes('broker cannot take its port back'))).toHaveLength(1)
    } finally {
      if (holder.listening) holder.close()
      await demo.kill()
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 90_000)

  it('prints help', async () => {
    const { stdout } = await run(process.execPath, ['bin/outpost.js', '--help'])
    expect(stdout).toContain('outpost demo')
    expect(stdout).toContain('outpost gateway')
  })

  it('names the taken port when the gateway cannot bind it', async () => {
    const net = await import('node:net')
    const holder = net.createServer()
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()))
    const port = (holder.address() as import('node:net').AddressInfo).port
    const err = await run(process.execPath, ['bin/outpost.js', 'gateway', '--port', String(port)]).catch((e: { code: number; stderr: string }) => e)
    holder.close()
    expect((err as { code: number }).code).toBe(1)
    expect((err as { stderr: string }).stderr).toContain(`PORT_IN_USE`)
    expect((err as { stderr: string }).stderr).toContain(String(port))
  })
})
