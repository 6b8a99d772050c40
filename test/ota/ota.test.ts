// Over the air through a real gateway, as a user does it: `outpost flash <bundle> --device <id>
// --gateway <url>` against the thermo bundle run by its launcher from a folder outside the
// repository, connected to the gateway's broker. A new version goes over and runs; a transfer
// whose CLI is killed with SIGKILL is resumed by running the command again, without sending what
// the device has; a bundle that never reports ready is rolled back and the CLI says why.
import { existsSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { countingProxy, cli, fakeBundle, otaArgs, otaRig, readJson, startCli, statusUntil, variant, type OtaRig } from './ota-helpers.js'

interface Pointer { slot: string; previous: string | null; confirmed: boolean }

describe('outpost flash over the air, through the gateway', () => {
  let rig: OtaRig
  const pointer = (): Pointer => readJson<Pointer>(path.join(rig.dev, 'active.json'))
  /** The thermo's read command, called through the gateway. */
  const readThermo = async (): Promise<unknown> => {
    const res = await fetch(`${rig.http}/devices/${rig.deviceId}/commands/thermo/1/read`, { method: 'POST', headers: { authorization: 'Bearer ota-test-token-0123456789' }, body: '{"unit":"C"}' })
    return ((await res.json()) as { result: unknown }).result
  }

  beforeAll(async () => {
    // The new bundle has 8 s to report ready (the thermo does in well under one).
    rig = await otaRig('ota', { OUTPOST_LAUNCHER_READY_MS: '8000' })
  }, 60_000)
  afterAll(async () => {
    await rig?.close()
  })

  it('happy path: version 0.2.0 goes over the air, the device restarts into it, the launcher keeps it, status says success', async () => {
    const v2 = variant(rig.thermo, path.join(rig.temp(), 'thermo'), rig.keys.privatePem, { version: '0.2.0', buildTime: '2025-02-01T00:00:00.000Z' })
    const before = await rig.status()
    expect(before.running).toMatchObject({ slot: 'a', device: 'thermo', version: '0.1.0' })
    expect(before.committed).toBeNull()

    const r = await cli(otaArgs(rig, v2))
    expect(r.err, r.out).toBe('')
    expect(r.code).toBe(0)
    // The steps, then the last line.
    expect(r.out).toMatch(/checked thermo 0\.2\.0 \(built 2025-02-01T00:00:00\.000Z\): 4 files, .* signed by key [0-9a-f]{16}/)
    expect(r.out).toMatch(/device thermo-ota takes it: (\d+) of \1 chunks of 64\.0 KB to send\n/)
    expect(r.out).toContain('100%')
    expect(r.out).toContain('verified by the device and installed into slot b; it restarts into it')
    expect(r.out).toContain('slot b reported ready and is kept')
    const chunks = Number(/takes it: (\d+) of/.exec(r.out)![1])
    expect(r.out.trim().split('\n').at(-1)).toMatch(new RegExp(`^flashed thermo 0\\.2\\.0 over the air to thermo-ota: it runs from slot b, slot a kept for rollback \\(${chunks} chunks sent, 0 already there; \\d+\\.\\d MB, .*/s\\)$`))

    const after = await rig.status()
    expect(after.running).toMatchObject({ slot: 'b', device: 'thermo', version: '0.2.0', buildTime: '2025-02-01T00:00:00.000Z' })
    expect(after.committed).toMatchObject({ slot: 'b', version: '0.2.0', outcome: 'success' })
    expect(after.last).toMatchObject({ outcome: 'success', slot: 'b', version: '0.2.0' })
    expect(after.transfer).toBeNull()
    expect(pointer()).toMatchObject({ slot: 'b', previous: 'a', confirmed: true })
    expect(rig.launcher.lines.some((l) => l.includes('slot a asked to be restarted'))).toBe(true)
    // The staging area is empty again; the slots are whole; the new bundle serves its command.
    expect(readdirSync(path.join(rig.dev, 'ota'))).toEqual(['committed.json'])
    expect(readdirSync(path.join(rig.dev, 'slots')).sort()).toEqual(['a', 'b'])
    expect(await readThermo()).toMatchObject({ unit: 'C' })
  }, 60_000)

  it('a transfer whose CLI is killed (SIGKILL) resumes when run again: only the missing chunks are sent', async () => {
    const v3 = variant(rig.thermo, path.join(rig.temp(), 'thermo'), rig.keys.privatePem, { version: '0.3.0', buildTime: '2025-03-01T00:00:00.000Z' })
    const proxy = await countingProxy(rig.http)
    try {
      // Small chunks, slowed down: the kill falls in the middle of the transfer.
      const first = startCli(otaArgs(rig, v3, ['--chunk-kb', '16'], proxy.url), { OUTPOST_OTA_CHUNK_DELAY_MS: '20' })
      const end = Date.now() + 30_000
      while (!/\] [3-9]\d%/.test(first.out()) && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
      first.kill('SIGKILL')
      const killed = await first.done
      expect(killed.signal, killed.out + killed.err).toBe('SIGKILL')
      const sentBefore = proxy.count('chunk')
      expect(sentBefore).toBeGreaterThan(0)

      // What the device has once the chunks that were in flight have landed.
      let present = -1
      const s = await statusUntil(rig, (st) => {
        const n = st.transfer === null ? -1 : st.transfer.files.reduce((m, f) => m + f.present.length, 0)
        const stable = n === present
        present = n
        return stable
      })
      const t = s.transfer!
      const total = t.files.reduce((m, f) => m + f.chunks, 0)
      expect(t).toMatchObject({ version: '0.3.0', chunkBytes: 16 * 1024 })
      expect(present).toBeGreaterThan(0)
      expect(present).toBeLessThan(total)
      expect(t.missing).toBe(total - present)
      // Nothing switched yet: the device runs 0.2.0.
      expect(s.running).toMatchObject({ slot: 'b', version: '0.2.0' })

      proxy.reset()
      // Run again, without --chunk-kb: the device's transfer keeps its chunk size.
      const second = await cli(otaArgs(rig, v3, [], proxy.url))
      expect(second.err, second.out).toBe('')
      expect(second.code).toBe(0)
      expect(second.out).toContain(`takes it: ${total - present} of ${total} chunks of 16.0 KB to send (${present} there already: resuming)`)
      expect(second.out).toContain(`${total - present} chunks sent, ${present} already there`)
      // Counted on the wire: each missing chunk once, none of those present.
      expect(proxy.count('chunk')).toBe(total - present)
      expect(proxy.count('begin')).toBe(1)
      expect(proxy.count('commit')).toBe(1)
    } finally {
      await proxy.close()
    }
    const after = await rig.status()
    expect(after.running).toMatchObject({ slot: 'a', version: '0.3.0' })
    expect(after.committed).toMatchObject({ slot: 'a', version: '0.3.0', outcome: 'success' })
    expect(pointer()).toMatchObject({ slot: 'a', previous: 'b', confirmed: true })
  }, 90_000)

  it('a new bundle that never reports ready is rolled back by the launcher; the CLI says so, with the reason, and exits 1', async () => {
    // Signed by the trusted key, verifies, starts, and never says ready.
    const silent = await fakeBundle(path.join(rig.temp(), 'silent'), "setInterval(() => {}, 1000)\n", rig.keys.privatePem, 'silent')
    // A bundle of another device (its own name): flashed as one with --change-device.
    const r = await cli(otaArgs(rig, silent, ['--wait', '60', '--change-device']))
    expect(r.code, r.out + r.err).toBe(1)
    expect(r.out).toContain('verified by the device and installed into slot b; it restarts into it')
    // The failed step (the progress display's line), then the last line: what happened and why.
    const err = r.err.trim().split('\n')
    expect(err).toHaveLength(2)
    expect(err[0]).toBe('✖ wait for the new bundle to report ready [FAILED: rolled back]')
    expect(err[1]).toBe('outpost: rolled back: silent 0.0.1 in slot b was not kept (slot b did not report ready within 8000 ms); device thermo-ota runs slot a (thermo 0.3.0, built 2025-03-01T00:00:00.000Z) again')

    const s = await rig.status()
    expect(s.running).toMatchObject({ slot: 'a', version: '0.3.0' })
    expect(s.committed).toMatchObject({ slot: 'b', device: 'silent', outcome: 'rolled-back', reason: 'slot b did not report ready within 8000 ms' })
    expect(s.last).toMatchObject({ outcome: 'rolled-back', slot: 'a', reason: 'slot b did not report ready within 8000 ms' })
    expect(pointer()).toMatchObject({ slot: 'a', previous: null, confirmed: true })
    expect(await readThermo()).toMatchObject({ unit: 'C' })
    expect(existsSync(path.join(rig.dev, 'ota', 'bundle'))).toBe(false)
  }, 90_000)
})
