// Config files with odd values, through the real CLI: a TLS certificate that is a device
// (/dev/zero was read without end: 4 GB in 12 s), a config file that is a pipe (the start hung)
// or a link to a device, a dataDir that is a file (a bare "EEXIST"). Each now stops the start
// with one INVALID_CONFIG line and exit code 2.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { outpost } from './gateway-attack-process.js'

const dir = mkdtempSync(path.join(tmpdir(), 'outpost-attack-config-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const file = (name: string, text: string): string => {
  const f = path.join(dir, name)
  writeFileSync(f, text)
  return f
}

describe('gateway under attack: config files with odd values', () => {
  it('stops with one INVALID_CONFIG line and exit 2 for a device as TLS file, a pipe or a device as config file, a file as dataDir', async () => {
    const fifo = path.join(dir, 'fifo.yaml')
    execFileSync('mkfifo', [fifo])
    const zero = path.join(dir, 'zero.yaml')
    symlinkSync('/dev/zero', zero)
    const cases: [string, RegExp][] = [
      [file('tls.yaml', 'mqtt: { port: 0, tls: { port: 0, certFile: /dev/zero, keyFile: /dev/zero } }\nhttp: { enabled: false }\n'), /^outpost: INVALID_CONFIG: cannot read the TLS certificate file \/dev\/zero: not a regular file$/],
      [fifo, /^outpost: INVALID_CONFIG: \/\S*\/fifo\.yaml: cannot read the config file \(not a regular file\)$/],
      [zero, /^outpost: INVALID_CONFIG: \/\S*\/zero\.yaml: cannot read the config file \(not a regular file\)$/],
      [file('big.yaml', `# ${'x'.repeat(2 * 1024 * 1024)}\nmqtt: { port: 0 }\n`), /^outpost: INVALID_CONFIG: big\.yaml: the config file has \d+ bytes; a config file has at most 1048576$/],
      [file('datadir.yaml', 'dataDir: /dev/null\nmqtt: { port: 0 }\nhttp: { enabled: false }\n'), /^outpost: INVALID_CONFIG: dataDir: cannot use \/dev\/null as the data folder \(a file is in the way\)$/],
    ]
    for (const [config, wanted] of cases) {
      const r = await outpost(['gateway', '--config', config])
      expect(r.code, config).toBe(2)
      const lines = r.err.trim().split('\n')
      expect(lines, config).toHaveLength(1)
      expect(lines[0], config).toMatch(wanted)
    }
  }, 60_000)
})
