// The same sources built twice, into different folders, give byte-identical bundle directories
// when the build time is pinned: the JavaScript, its source map, the manifest and (Ed25519 being
// deterministic) its signature. The build time comes from --build-time, else SOURCE_DATE_EPOCH.
import { createPrivateKey } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { buildDevice, generateSigningKeys, resolveBuildTime } from '../../build/index.js'
import { caught } from '../helpers/caught.js'
import { tempDirs } from './build-helpers.js'

const temp = tempDirs('repro')

describe('building the same sources twice', () => {
  it('gives the same bytes in every file, wherever the output goes', async () => {
    const key = createPrivateKey(generateSigningKeys().privatePem)
    const opts = { signingKey: key, buildTime: resolveBuildTime(undefined, { SOURCE_DATE_EPOCH: '1735689600' }) }
    const a = await buildDevice('thermo', { ...opts, outDir: temp() })
    const b = await buildDevice('thermo', { ...opts, outDir: path.join(temp(), 'deeper', 'still') })
    const files = readdirSync(a.dir).sort()
    expect(files).toEqual(['better_sqlite3.node', 'manifest.json', 'manifest.sig', 'thermo.cjs', 'thermo.code.cjs', 'thermo.code.cjs.map'])
    expect(readdirSync(b.dir).sort()).toEqual(files)
    for (const f of files) expect(readFileSync(path.join(b.dir, f)).equals(readFileSync(path.join(a.dir, f))), f).toBe(true)
    expect(a.manifest.buildTime).toBe('2025-01-01T00:00:00.000Z')
    // Nothing of where it was built is in it.
    for (const f of ['thermo.cjs', 'thermo.code.cjs', 'thermo.code.cjs.map', 'manifest.json']) expect(readFileSync(path.join(a.dir, f), 'utf8'), f).not.toContain(process.cwd())
    const map = JSON.parse(readFileSync(path.join(a.dir, 'thermo.code.cjs.map'), 'utf8')) as { sources: string[] }
    expect(map.sources).toContain('devices/thermo/main.ts')
  }, 30_000)

  it('takes the time from --build-time (ISO or seconds) over SOURCE_DATE_EPOCH, and refuses what is not a time', async () => {
    expect(resolveBuildTime('2025-03-04T05:06:07Z', { SOURCE_DATE_EPOCH: '0' })).toBe('2025-03-04T05:06:07.000Z')
    expect(resolveBuildTime('86400', {})).toBe('1970-01-02T00:00:00.000Z')
    expect(resolveBuildTime(undefined, { SOURCE_DATE_EPOCH: '0' })).toBe('1970-01-01T00:00:00.000Z')
    expect(resolveBuildTime(undefined, { SOURCE_DATE_EPOCH: '' }, () => 5_000)).toBe('1970-01-01T00:00:05.000Z')
    expect(await caught(Promise.resolve().then(() => resolveBuildTime('yesterday', {})))).toMatchObject({ code: 'BAD_ARGUMENT', message: expect.stringContaining('--build-time "yesterday"') })
    expect(await caught(Promise.resolve().then(() => resolveBuildTime(undefined, { SOURCE_DATE_EPOCH: '2025-01-01' })))).toMatchObject({ code: 'BAD_ARGUMENT', message: expect.stringContaining('SOURCE_DATE_EPOCH') })
  })
})
