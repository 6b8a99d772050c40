// Over the air, what is refused: a chunk whose bytes do not match its sha256 (typed error, nothing
// written), a received bundle whose signature does not verify at commit, bundles the device does
// not trust (refused at begin, before anything is sent), and the CLI's mistakes and unreachable
// things (a typo, no gateway there, a wrong token, an unknown or offline device): one line each.
// The device keeps running its bundle throughout.
import { createHash, createPrivateKey, sign } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { flashBundle } from '../../build/flash.js'
import { generateSigningKeys } from '../../build/index.js'
import { readLocalBundle, type LocalBundle, type TransferView } from '../../build/ota.js'
import { caught as caughtAny } from '../helpers/caught.js'
import { freePort } from '../helpers/wait.js'
import { cli, otaArgs, otaRig, readJson, TOKEN, variant, type OtaRig } from './ota-helpers.js'

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const CHUNK = 64 * 1024
/** The typed error a call rejects with. */
const caught = async (p: Promise<unknown>): Promise<{ code: string; message: string }> => (await caughtAny(p)) as { code: string; message: string }

describe('over the air: refusals, and the device keeps its bundle', () => {
  let rig: OtaRig
  let v2: LocalBundle
  const begin = (b: LocalBundle): Promise<TransferView> => rig.call<TransferView>('begin', {
    bundleId: b.bundleId, manifest: b.manifestText, signature: b.signatureText, chunkBytes: CHUNK, files: b.files.map((f) => ({ name: f.name, size: f.size, sha256: f.sha256 })),
  })
  const chunkOf = (b: LocalBundle, file: string, index: number): Buffer => b.files.find((f) => f.name === file)!.bytes.subarray(index * CHUNK, (index + 1) * CHUNK)
  /** The device still runs slot a with version 0.1.0, and its boot pointer was not touched. */
  const unchanged = async (): Promise<void> => {
    const s = await rig.status()
    expect(s.running).toMatchObject({ slot: 'a', version: '0.1.0' })
    expect(readJson(path.join(rig.dev, 'active.json'))).toMatchObject({ slot: 'a', previous: null, confirmed: true })
    expect(existsSync(path.join(rig.dev, 'slots', 'b'))).toBe(false)
  }

  beforeAll(async () => {
    rig = await otaRig('otaref')
    v2 = await readLocalBundle(variant(rig.thermo, path.join(rig.temp(), 'thermo'), rig.keys.privatePem, { version: '0.2.0', buildTime: '2025-02-01T00:00:00.000Z' }))
  }, 60_000)
  afterAll(async () => {
    await rig?.close()
  })

  it('a chunk whose data does not match its sha256 is refused with HASH_MISMATCH and nothing is written; a chunk sent twice is taken once', async () => {
    expect((await caught(rig.call('chunk', { bundleId: v2.bundleId, file: 'thermo.code.cjs', index: 0, data: '', sha256: sha256(Buffer.alloc(0)) }))).code).toBe('NOT_FOUND')
    const t = await begin(v2)
    expect(t).toMatchObject({ bundleId: v2.bundleId, version: '0.2.0', chunkBytes: CHUNK })
    expect(t.files.every((f) => f.present.length === 0)).toBe(true)
    const good = chunkOf(v2, 'thermo.code.cjs', 0)
    const bad = Buffer.from(good)
    bad[100] = bad[100]! ^ 0xff
    const staged = path.join(rig.dev, 'ota', 'bundle', 'thermo.code.cjs')
    for (const data of [bad.toString('base64'), `${good.toString('base64')}x`, good.subarray(1).toString('base64')]) {
      const err = await caught(rig.call('chunk', { bundleId: v2.bundleId, file: 'thermo.code.cjs', index: 0, data, sha256: sha256(good) }))
      expect(err.code).toBe('HASH_MISMATCH')
      expect(err.message).toMatch(/^chunk 0 of thermo\.code\.cjs does not match its sha256 .*; nothing was written$/)
    }
    // The gateway's answer, as any HTTP caller gets it.
    const res = await fetch(`${rig.http}/devices/${rig.deviceId}/commands/ota/1/chunk`, {
      method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ bundleId: v2.bundleId, file: 'thermo.code.cjs', index: 0, data: bad.toString('base64'), sha256: sha256(good) }),
    })
    expect(res.ok).toBe(false)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('HASH_MISMATCH')
    // Nothing written: the staged file is as begin made it (zeros), and no chunk is present.
    expect(readFileSync(staged).subarray(0, CHUNK).equals(Buffer.alloc(CHUNK))).toBe(true)
    expect((await rig.status()).transfer!.files.find((f) => f.name === 'thermo.code.cjs')!.present).toEqual([])
    // The right chunk is taken; sent again, it is not written again.
    expect(await rig.call('chunk', { bundleId: v2.bundleId, file: 'thermo.code.cjs', index: 0, data: good.toString('base64'), sha256: sha256(good) })).toMatchObject({ written: true })
    expect(await rig.call('chunk', { bundleId: v2.bundleId, file: 'thermo.code.cjs', index: 0, data: good.toString('base64'), sha256: sha256(good) })).toMatchObject({ written: false })
    expect(readFileSync(staged).subarray(0, CHUNK).equals(good)).toBe(true)
    expect((await rig.status()).transfer!.files.find((f) => f.name === 'thermo.code.cjs')!.present).toEqual([0])
    await unchanged()
  }, 30_000)

  it('a received bundle whose signature does not verify is refused at commit (BAD_SIGNATURE): nothing switched, the transfer discarded', async () => {
    const t = await begin(v2)
    for (const f of t.files) {
      for (let i = 0; i < f.chunks; i++) {
        if (f.present.includes(i)) continue
        const data = chunkOf(v2, f.name, i)
        await rig.call('chunk', { bundleId: v2.bundleId, file: f.name, index: i, data: data.toString('base64'), sha256: sha256(data) })
      }
    }
    expect((await rig.status()).transfer!.missing).toBe(0)
    // What arrived is complete; its signature is then not the trusted key's signature of that manifest.
    const sigFile = path.join(rig.dev, 'ota', 'bundle', 'manifest.sig')
    const sig = JSON.parse(readFileSync(sigFile, 'utf8')) as { keyId: string; signature: string }
    sig.signature = sign(null, Buffer.from('another manifest'), createPrivateKey(rig.keys.privatePem)).toString('base64')
    writeFileSync(sigFile, JSON.stringify(sig))
    const err = await caught(rig.call('commit', { bundleId: v2.bundleId }))
    expect(err.code).toBe('BAD_SIGNATURE')
    expect(err.message).toBe(`the manifest of bundle ${v2.bundleId} does not verify; nothing was switched: the device keeps running slot a; the bundle received was discarded`)
    const s = await rig.status()
    expect(s.transfer).toBeNull()
    expect(s.committed).toBeNull()
    expect(existsSync(path.join(rig.dev, 'ota', 'bundle'))).toBe(false)
    await unchanged()
  }, 30_000)

  it('outpost flash refuses bundles the device does not trust at begin, before sending a chunk: a changed manifest, another key, no signature', async () => {
    const changed = variant(rig.thermo, path.join(rig.temp(), 'thermo'), rig.keys.privatePem, {})
    const manifest = readFileSync(path.join(changed, 'manifest.json'), 'utf8')
    writeFileSync(path.join(changed, 'manifest.json'), manifest.replace('"version": "0.1.0"', '"version": "6.6.6"'))
    const other = variant(rig.thermo, path.join(rig.temp(), 'thermo'), generateSigningKeys().privatePem, { version: '0.2.0' })
    const unsigned = variant(rig.thermo, path.join(rig.temp(), 'thermo'), rig.keys.privatePem, {})
    const { rmSync } = await import('node:fs')
    rmSync(path.join(unsigned, 'manifest.sig'))
    const cases: [string, RegExp][] = [
      [changed, /^outpost: BAD_SIGNATURE: the manifest of bundle [0-9a-f]{24} does not verify; nothing was received$/],
      [other, /^outpost: UNKNOWN_KEY: bundle [0-9a-f]{24} is signed by key [0-9a-f]{16}, which this device does not trust; nothing was received$/],
      // Refused here: the gateway is not even asked (none listens there).
      [unsigned, /^outpost: UNKNOWN_KEY: the bundle in .* is not signed \(no manifest\.sig; built with --unsigned\): devices refuse it$/],
    ]
    for (const [bundle, line] of cases) {
      const r = await cli(otaArgs(rig, bundle, [], bundle === unsigned ? `http://127.0.0.1:${await freePort()}` : rig.http))
      expect(r.code, r.out + r.err).toBe(1)
      expect(r.err.trim().split('\n').at(-1)).toMatch(line)
      expect(r.out).not.toContain('transfer')
    }
    // Another device's bundle (found from outside: a thermo silently became a display): refused unless asked for.
    const display = variant(rig.thermo, path.join(rig.temp(), 'thermo'), rig.keys.privatePem, { device: 'display', version: '0.2.0' })
    const r = await cli(otaArgs(rig, display, [], rig.http))
    expect([r.code, r.err.trim().split('\n').at(-1)]).toEqual([1, "outpost: BAD_ARGUMENT: thermo-otaref runs the thermo bundle and this one is display's: give --change-device to make it a display; nothing was sent"])
    expect((await rig.status()).transfer).toBeNull()
    await unchanged()
  }, 60_000)

  it('outpost flash --device: typos are one line and exit code 2; a gateway not there, a wrong or missing token, an unknown device are one line and exit code 1', async () => {
    const b = v2.dir
    const usage: [string[], RegExp][] = [
      [['flash', b, '--devcie', rig.deviceId], /unknown option --devcie \(did you mean --device\?\)/],
      [['flash', b, '--device', rig.deviceId], /outpost flash --device needs --gateway <url>: the gateway's HTTP face/],
      [['flash', b, '--gateway', rig.http], /--gateway is for flashing over the air: give --device <id> --gateway <url> too/],
      [['flash', b, '--device', rig.deviceId, '--gateway', 'mqtt://127.0.0.1:1883'], /--gateway "mqtt:\/\/127\.0\.0\.1:1883" is not the gateway's HTTP URL; expected http:\/\/host:port/],
      [['flash', b, '--device', 'no/such', '--gateway', rig.http], /--device "no\/such" is not a device id/],
      [['flash', b, '--device', rig.deviceId, '--gateway', rig.http, '--chunk-kb', '0'], /--chunk-kb "0" is not accepted; expected a whole number of KB from 1 to 176/],
      [['flash', b, '--device', rig.deviceId, '--gateway', rig.http, '--chunk-kb', '500'], /--chunk-kb "500" is not accepted/],
      [['flash', b, '--device', rig.deviceId, '--gateway', rig.http, '--to', rig.dev], /--to flashes a device's filesystem, --device over the air through a gateway: give one of them/],
      [['flash', b, '--device', rig.deviceId, '--gateway', rig.http, '--key', 'k.pem'], /--key is for --to: over the air, the device verifies bundles with the keys it was provisioned with/],
      [['flash', b, '--device', rig.deviceId, '--gateway', rig.http, '--wait', 'soon'], /--wait "soon" is not accepted/],
    ]
    for (const [args, line] of usage) {
      const r = await cli(args)
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(2)
      expect(r.err).toMatch(new RegExp(`^outpost: BAD_ARGUMENT: .*${line.source}`))
      expect(r.err.trim().split('\n')).toHaveLength(1)
    }
    const port = await freePort()
    const failing: [string[], Record<string, string>, RegExp][] = [
      [['flash', b, '--device', rig.deviceId, '--gateway', `http://127.0.0.1:${port}`], {}, new RegExp(`^outpost: cannot reach the gateway at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\); is it running, with its HTTP face on`)],
      [otaArgs(rig, b).map((a) => (a === TOKEN ? 'wrong-token' : a)), {}, /^outpost: NOT_AUTHENTICATED: .*; the token given \(--token or OUTPOST_HTTP_TOKEN\) is not the gateway's$/],
      [['flash', b, '--device', rig.deviceId, '--gateway', rig.http], {}, /^outpost: NOT_AUTHENTICATED: a bearer token is required; give the gateway's token with --token or OUTPOST_HTTP_TOKEN$/],
      [['flash', b, '--device', 'thermo-nobody', '--gateway', rig.http], { OUTPOST_HTTP_TOKEN: TOKEN }, /^outpost: DEVICE_UNKNOWN: /],
    ]
    for (const [args, env, line] of failing) {
      const r = await cli(args, env)
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(1)
      const err = r.err.trim().split('\n')
      expect(err.at(-1)).toMatch(line)
      // At most the display's line for the failed step before it; never a stack trace.
      expect(err.length).toBeLessThanOrEqual(2)
      expect(r.err).not.toMatch(/\n\s+at /)
    }
    await unchanged()
  }, 60_000)

  it('a boot pointer damaged while the device runs: begin is refused (STORE_FAILED, restart the device), nothing is switched', async () => {
    const pointer = path.join(rig.dev, 'active.json')
    const before = readFileSync(pointer)
    writeFileSync(pointer, before.subarray(0, 20))
    try {
      const err = await caught(begin(v2))
      expect(err.code).toBe('STORE_FAILED')
      expect(err.message).toMatch(/^this device's boot pointer \(active\.json\) is damaged; nothing was switched: the device keeps running slot a: restart the device/)
      expect(err.message).not.toContain(rig.dev)
      expect(readFileSync(pointer).equals(before.subarray(0, 20))).toBe(true)
    } finally {
      writeFileSync(pointer, before)
    }
    await unchanged()
  }, 30_000)

  it('outpost flash status --device tells what the device has; a bundle flashed with --to that waits for a restart blocks flashing over the air; a device that went offline is DEVICE_OFFLINE', async () => {
    const st = await cli(['flash', 'status', '--device', rig.deviceId, '--gateway', rig.http], { OUTPOST_HTTP_TOKEN: TOKEN })
    expect(st.code, st.err).toBe(0)
    expect(st.out).toContain(`device ${rig.deviceId} through ${rig.http}`)
    expect(st.out).toContain('running:  slot a: thermo 0.1.0, built 2025-01-01T00:00:00.000Z')
    expect(st.out).toContain('commit:   none over the air yet')
    expect(st.out).toContain('transfer: none under way')
    // Slot b flashed onto the device's folder while it runs slot a: over the air would overwrite the running slot.
    await flashBundle(v2.dir, { to: rig.dev })
    const blocked = await cli(otaArgs(rig, v2.dir))
    expect(blocked.code).toBe(1)
    expect(blocked.err.trim().split('\n').at(-1)).toBe('outpost: BAD_ARGUMENT: this device runs slot a but slot b is active (flashed, not started yet): restart the device first')
    expect(readJson(path.join(rig.dev, 'active.json'))).toMatchObject({ slot: 'b', previous: 'a', confirmed: false })
    expect((await rig.status()).running).toMatchObject({ slot: 'a', version: '0.1.0' })
    await rig.launcher.kill('SIGTERM')
    const r = await cli(otaArgs(rig, v2.dir))
    expect(r.code).toBe(1)
    expect(r.err.trim().split('\n').at(-1)).toMatch(new RegExp(`^outpost: DEVICE_OFFLINE: .*${rig.deviceId}`))
  }, 60_000)
})
