// `outpost devices add` with ids made to pass for another device's: a trailing space, a
// zero-width space, a bidi override, a byte that is not UTF-8. Each was added, and showed in
// `devices list`, /devices and the logs exactly as the device it imitates. Each is now refused
// in one line, its invisible characters written as escapes; ordinary ids, non-ASCII ones included,
// are still taken.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { outpost } from './gateway-attack-process.js'

const dir = mkdtempSync(path.join(tmpdir(), 'outpost-attack-cli-'))
const config = path.join(dir, 'gateway.yaml')
writeFileSync(config, 'dataDir: data\nmqtt: { port: 0 }\n')
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('gateway under attack: outpost devices add with look-alike ids', () => {
  it('refuses ids with spaces, invisible or formatting characters, or U+FFFD, with one escaped line and exit 2; takes the others', async () => {
    expect((await outpost(['devices', 'add', 'dev-a', '--config', config])).code).toBe(0)
    const cases: [string, string][] = [
      ['dev-a ', 'dev-a\\u0020'],
      [' dev-a', '\\u0020dev-a'],
      ['dev-a\u200b', 'dev-a\\u200b'],
      ['dev\u00a0a', 'dev\\u00a0a'],
      ['\u202edev-a', '\\u202edev-a'],
      ['dev-a\ufeff', 'dev-a\\ufeff'],
      ['dev-\ufffd', 'dev-\\ufffd'],
    ]
    for (const [id, shown] of cases) {
      const r = await outpost(['devices', 'add', id, '--config', config])
      expect(r.code, shown).toBe(2)
      const lines = r.err.trim().split('\n')
      expect(lines, shown).toHaveLength(1)
      expect(lines[0], shown).toBe(`outpost: BAD_ARGUMENT: device id "${shown}" is not valid: no spaces, invisible or formatting characters (zero-width, bidi), or U+FFFD (a byte that was not UTF-8)`)
    }
    for (const id of ['thermo-é', 'Dev-A', 'ünïcode_1']) expect((await outpost(['devices', 'add', id, '--config', config])).code, id).toBe(0)
    const list = await outpost(['devices', 'list', '--config', config, '--json'])
    const ids = (JSON.parse(list.out) as { id: string }[]).map((d) => d.id).sort()
    expect(ids).toEqual(['Dev-A', 'dev-a', 'thermo-é', 'ünïcode_1'].sort())
  }, 60_000)

  // Found from outside (helper, a new user): `devices add` took a role the configuration does not
  // define (it showed only at login, as a gateway warning), and printed a line to run an Outpost
  // device with an id `outpost device` refuses.
  it('refuses a role the configuration does not define; for an id an Outpost device cannot take, prints no line to run one', async () => {
    const unknown = await outpost(['devices', 'add', 'ops-1', '--role', 'nosuchrole', '--config', config])
    expect(unknown.code).toBe(2)
    expect(unknown.err.trim()).toBe('outpost: BAD_ARGUMENT: --role "nosuchrole" is not a role of the gateway\'s configuration (its roles: device); define it under auth.roles first, and give that config with --config')
    const withRole = path.join(dir, 'roles.yaml')
    writeFileSync(withRole, 'dataDir: data\nmqtt: { port: 0 }\nauth:\n  roles:\n    watcher: { subscribe: ["ob/+/evt/thermo/1/+"] }\n')
    expect((await outpost(['devices', 'add', 'ops-2', '--role', 'watcher', '--config', withRole])).code).toBe(0)
    const odd = await outpost(['devices', 'add', 'line:7', '--config', config])
    expect(odd.code).toBe(0)
    expect(odd.out).not.toContain('Run a device with it')
    expect(odd.out).toContain("An MQTT client may log in with it; an Outpost device may not (OUTPOST_DEVICE_ID takes letters, digits, '.', '_' or '-', starting with a letter or digit).")
    const plain = await outpost(['devices', 'add', 'thermo-9', '--config', config])
    expect(plain.out).toMatch(/Run a device with it:\n {2}OUTPOST_DEVICE_ID=thermo-9 OUTPOST_MQTT_URL=mqtt:\/\/thermo-9:[^@]+@127\.0\.0\.1:\d+ npx outpost device <name>/)
  }, 60_000)
})
