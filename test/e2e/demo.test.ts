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
