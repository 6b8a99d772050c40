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
})
