// The gateway's config loader against real files in a temporary folder: what a valid YAML or JSON
// file gives, what each kind of mistake says (its key path and what is accepted), the variables
// over the file, relative paths and the redacted print-out.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import YAML from 'yaml'
import { eventFilterProblem, formatConfig, loadGatewayConfig } from '../../gateway/config/load-config.js'
import { ErrorCode, isOutpostError, type OutpostError } from '../../runtime/errors.js'

const dir = mkdtempSync(path.join(tmpdir(), 'outpost-config-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

let n = 0
/** Writes `text` to a new file with this extension and returns its path. */
function file(text: string, ext = '.yaml'): string {
  const f = path.join(dir, `c${++n}${ext}`)
  writeFileSync(f, text)
  return f
}

/** The error loading `f` throws (the test fails when it loads). */
function errorOf(f: string | undefined, env: NodeJS.ProcessEnv = {}): OutpostError {
  try {
    loadGatewayConfig({ file: f, env })
  } catch (err) {
    if (isOutpostError(err)) return err
    throw err
  }
  throw new Error('loaded without an error')
}

const FULL_YAML = `
dataDir: data
mqtt:
  host: 0.0.0.0
  port: 1884
  maxPacketBytes: 65536
  maxTopicLevels: 12
  maxConnections: 500
  stallMs: 4000
  sessionMaxMessages: 2000
  sessionMaxBytes: 0
  sessionsMaxBytes: 1073741824
  retainedMaxTopics: 5000
  retainedMaxBytes: 1048576
  tls: { port: 8883, certFile: certs/gw.crt, keyFile: /etc/outpost/gw.key }
  websocket: { port: 8083, path: /mqtt }
auth:
  enabled: true
  roles:
    dashboard:
      subscribe: [ob/+/evt/#]
    thermo-reader:
      subscribe: [ob/+/evt/thermo/1/+, ob/kitchen-1/evt/#]
persistence: memory
http:
  host: 127.0.0.1
  port: 9090
  token: s3cret-token-of-some-length
log:
  level: debug
  format: json
`

describe('loadGatewayConfig: valid files', () => {
  it('reads every key of a YAML file, paths resolved against its folder', () => {
    const f = file(FULL_YAML)
    const c = loadGatewayConfig({ file: f, env: {} })
    expect(c.source).toBe(f)
    expect(c.dataDir).toBe(path.join(dir, 'data'))
    expect(c.mqtt).toEqual({
      host: '0.0.0.0',
      port: 1884,
      maxPacketBytes: 65536,
      maxTopicLevels: 12,
      maxConnections: 500,
      stallMs: 4000,
      sessionMaxMessages: 2000,
      sessionMaxBytes: 0,
      sessionsMaxBytes: 1073741824,
      retainedMaxTopics: 5000,
      retainedMaxBytes: 1048576,
      tls: { port: 8883, certFile: path.join(dir, 'certs/gw.crt'), keyFile: '/etc/outpost/gw.key' },
      websocket: { port: 8083, path: '/mqtt' },
    })
    // The device role stays when the file does not redefine it.
    expect(c.auth).toEqual({
      enabled: true,
      roles: { device: { subscribe: ['ob/+/evt/#'] }, dashboard: { subscribe: ['ob/+/evt/#'] }, 'thermo-reader': { subscribe: ['ob/+/evt/thermo/1/+', 'ob/kitchen-1/evt/#'] } },
    })
    expect(c.persistence).toBe('memory')
    expect(c.http).toEqual({ enabled: true, host: '127.0.0.1', port: 9090, token: 's3cret-token-of-some-length' })
    expect(c.log).toEqual({ level: 'debug', format: 'json' })
  })

  it('reads the same from JSON', () => {
    const y = loadGatewayConfig({ file: file(FULL_YAML), env: {} })
    const j = loadGatewayConfig({ file: file(JSON.stringify(YAML.parse(FULL_YAML)), '.json'), env: {} })
    expect({ ...j, source: undefined }).toEqual({ ...y, source: undefined })
  })

  it('applies the config-file defaults to a nearly empty file: auth on, sqlite, HTTP on 127.0.0.1:8080', () => {
    const cwdData = path.join(dir, 'home')
    const c = loadGatewayConfig({ file: file('mqtt: { port: 0 }\n', '.yml'), env: { OUTPOST_DATA_DIR: cwdData } })
    expect(c.mqtt.port).toBe(0)
    expect(c.mqtt.host).toBe('127.0.0.1')
    expect(c.auth.enabled).toBe(true)
    expect(c.auth.roles).toEqual({ device: { subscribe: ['ob/+/evt/#'] } })
    expect(c.persistence).toBe('sqlite')
    expect(c.http).toEqual({ enabled: true, host: '127.0.0.1', port: 8080 })
    expect(c.dataDir).toBe(path.join(cwdData, 'gateway'))
  })

  it('lets the file redefine the device role', () => {
    const c = loadGatewayConfig({ file: file('auth: { roles: { device: { subscribe: [ob/+/evt/thermo/#] } } }\n'), env: {} })
    expect(c.auth.roles).toEqual({ device: { subscribe: ['ob/+/evt/thermo/#'] } })
  })

  it('without a file: development defaults, HTTP on, data under OUTPOST_DATA_DIR or .outpost', () => {
    const c = loadGatewayConfig({ env: {} })
    expect(c.auth.enabled).toBe(false)
    expect(c.persistence).toBe('memory')
    expect(c.http.enabled).toBe(true)
    expect(c.http.port).toBe(8080)
    expect(c.dataDir).toBe(path.resolve('.outpost', 'gateway'))
    expect(c.source).toBeUndefined()
    expect(loadGatewayConfig({ env: { OUTPOST_DATA_DIR: 'elsewhere' } }).dataDir).toBe(path.resolve('elsewhere', 'gateway'))
  })
})

describe('loadGatewayConfig: mistakes in the file', () => {
  // [file text, what the message must contain]
  const cases: [string, string[]][] = [
    ['mqtt: { port: abc }\n', ['mqtt.port: expected a whole number from 0 to 65535', 'got "abc"']],
    ['mqtt: { port: 70000 }\n', ['mqtt.port: expected a whole number from 0 to 65535', 'got 70000']],
    ['mqtt: { port: 1.5 }\n', ['mqtt.port: expected a whole number']],
    ['mqtt: { host: "not a host!" }\n', ['mqtt.host: expected an IP address or a host name']],
    ['mqtt: { maxTopicLevels: 500 }\n', ['mqtt.maxTopicLevels: expected a whole number from 7 to 100']],
    ['mqtt: { maxTopicLevels: 1 }\n', ['mqtt.maxTopicLevels: expected a whole number from 7 to 100']],
    ['mqtt: { stallMs: -5 }\n', ['mqtt.stallMs: expected a whole number from 0 to 60000', 'got -5']],
    ['mqtt: { stallMs: 120000 }\n', ['mqtt.stallMs: expected a whole number from 0 to 60000', 'got 120000']],
    ['mqtt: { tls: { port: 8883, certFile: a.crt } }\n', ['mqtt.tls.keyFile: missing']],
    ['mqtt: { websocket: { port: 8083, path: mqtt } }\n', ['mqtt.websocket.path: expected a URL path such as /mqtt']],
    ['mqtt: 5\n', ['mqtt: expected a mapping with the keys host, port']],
    ['auth: { enabled: yes please }\n', ['auth.enabled: expected true or false', 'got "yes please"']],
    ['auth: { roles: { dash: { subscribe: ob/+/evt/# } } }\n', ['auth.roles.dash.subscribe: expected a list of event filters']],
    ['auth: { roles: { dash: { subscribe: [ob/+/cmd/#] } } }\n', ['auth.roles.dash.subscribe[0]: expected an event filter under ob/+/evt/', 'got "ob/+/cmd/#"']],
    ['auth: { roles: { dash: { subscribe: [ob/+/evt/ok/#, "ob/+/evt/#/x"] } } }\n', ['auth.roles.dash.subscribe[1]:', "'#' may only be the last level"]],
    ['auth: { roles: { dash: { subscribe: [ob/+/evt/a+b] } } }\n', ['auth.roles.dash.subscribe[0]:', 'level 4 "a+b" is not a topic level']],
    ['auth: { roles: { dash: { subscribe: [ob/+/evt/#], publish: [x] } } }\n', ['auth.roles.dash.publish: unknown key; expected one of subscribe']],
    ['auth: { roles: { "a role": { subscribe: [ob/+/evt/#] } } }\n', ['auth.roles.a role: expected a role name']],
    ['persistence: disk\n', ['persistence: expected sqlite or memory', 'got "disk"']],
    ['http: { token: short }\n', ['http.token: expected a string of at least 16 characters', 'got a secret of 5 characters (not shown)']],
    ['http: { token: "sixteen chars plus spaces" }\n', ['http.token: expected letters, digits and punctuation only', 'got a secret of 25 characters (not shown)']],
    ['http: { enabled: true, prot: 1 }\n', ['http.prot: unknown key; expected one of enabled, host, port, token']],
    ['log: { level: loud }\n', ['log.level: expected one of fatal, error, warn, info, debug, trace, silent']],
    ['dataDir: ""\n', ['dataDir: expected a folder path']],
  ]
  for (const [text, wanted] of cases) {
    it(`names the key: ${text.trim()}`, () => {
      const f = file(text)
      const err = errorOf(f)
      expect(err.code).toBe(ErrorCode.INVALID_CONFIG)
      expect(err.message.startsWith(`${path.basename(f)}: `)).toBe(true)
      for (const w of wanted) expect(err.message).toContain(w)
      expect(err.message).not.toContain('\n')
    })
  }

  it('names a typo at the top with the keys accepted there (mqqt:)', () => {
    const err = errorOf(file('mqqt:\n  port: 1883\n'))
    expect(err.message).toMatch(/: mqqt: unknown key; expected one of dataDir, mqtt, auth, persistence, http, log, forward, commands$/)
  })

  it('lists every problem of a file at once, on one line', () => {
    const err = errorOf(file('mqtt: { port: abc, hots: x }\npersistence: disk\nlog: { level: loud }\n'))
    for (const key of ['mqtt.port:', 'mqtt.hots:', 'persistence:', 'log.level:']) expect(err.message).toContain(key)
    expect(err.message).not.toContain('\n')
  })

  it('reports a missing file, a folder, an unreadable file, an empty file and a wrong extension', () => {
    // The whole path: a relative one shows where it was looked for.
    expect(errorOf(path.join(dir, 'nope.yaml')).message).toBe(`${path.join(dir, 'nope.yaml')}: cannot read the config file (no such file)`)
    const folder = path.join(dir, 'folder.yaml')
    mkdirSync(folder)
    expect(errorOf(folder).message).toContain('folder.yaml: cannot read the config file (a folder, not a file)')
    expect(errorOf(file('  \n\n')).message).toContain('the config file is empty')
    expect(errorOf(file('mqtt: {}', '.toml')).message).toContain('unknown file type ".toml"; expected a .yaml, .yml or .json file')
    if (process.getuid?.() !== 0) {
      const locked = file('mqtt: { port: 1 }\n')
      chmodSync(locked, 0o000)
      expect(errorOf(locked).message).toContain('cannot read the config file (permission denied)')
    }
    for (const f of [path.join(dir, 'nope.yaml'), folder]) expect(errorOf(f).code).toBe(ErrorCode.INVALID_CONFIG)
  })

  it('reports a YAML syntax error with its line, and duplicate keys', () => {
    const err = errorOf(file('mqtt:\n  port: 1883\n  host: [127.0.0.1\nauth: {}\n'))
    expect(err.code).toBe(ErrorCode.INVALID_CONFIG)
    expect(err.message).toMatch(/not valid YAML at line \d+, column \d+: /)
    expect(err.message).not.toContain('\n')
    expect(errorOf(file('mqtt: {}\nmqtt: {}\n')).message).toMatch(/not valid YAML at line 2, column 1: Map keys must be unique/)
    // JSON.parse keeps the last of two; the file is refused as YAML's is.
    expect(errorOf(file('{"mqtt": {"port": 19540,\n "port": 19541}}', '.json')).message).toMatch(/not valid JSON at line 2, column 2: a key is given twice in one object/)
  })

  it('refuses YAML aliases that expand without bound', () => {
    const levels = ['a: &a [x, x, x, x, x, x, x, x, x, x]']
    for (let i = 1; i < 10; i++) levels.push(`${'abcdefghij'[i]}: &${'abcdefghij'[i]} [${Array(10).fill(`*${'abcdefghij'[i - 1]}`).join(', ')}]`)
    const err = errorOf(file(`${levels.join('\n')}\n`))
    expect(err.code).toBe(ErrorCode.INVALID_CONFIG)
    expect(err.message).toContain('not usable YAML')
  })

  it('reports bad JSON and a top level that is not a mapping', () => {
    expect(errorOf(file('{ "mqtt": ', '.json')).message).toContain('not valid JSON')
    expect(errorOf(file('- a\n- b\n')).message).toContain('expected a mapping of keys (mqtt, auth, http, …) at the top, got ["a","b"]')
    expect(errorOf(file('42', '.json')).message).toContain('got 42')
  })
})

describe('eventFilterProblem', () => {
  it('takes event filters with wildcards and refuses the rest', () => {
    for (const ok of ['ob/+/evt/#', 'ob/thermo-1/evt/thermo/1/sample', 'ob/+/evt/+/+/+', 'ob/+/evt/thermo/#']) expect(eventFilterProblem(ok)).toBeUndefined()
    for (const no of ['ob/#', 'ob/+/evt', 'ob/+/cmd/#', '#', 'x/+/evt/#', 'ob/+/evt/a/#/b', 'ob/a#/evt/#', 'ob/+/evt//x', 'ob/+/evt/a\u0000b']) {
      expect(eventFilterProblem(no), no).toBeTypeOf('string')
    }
  })
})

describe('loadGatewayConfig: variables over the file', () => {
  it('overrides every key it names', () => {
    const f = file(FULL_YAML)
    const c = loadGatewayConfig({
      file: f,
      env: {
        OUTPOST_MQTT_PORT: '0',
        OUTPOST_MQTT_HOST: '127.0.0.1',
        OUTPOST_GATEWAY_DATA_DIR: 'gwdata',
        OUTPOST_HTTP_PORT: '0',
        OUTPOST_HTTP_HOST: 'localhost',
        OUTPOST_HTTP_TOKEN: 'another-token-0123456789',
        OUTPOST_AUTH: 'off',
        OUTPOST_LOG_LEVEL: 'warn',
        OUTPOST_LOG_FORMAT: 'pretty',
      },
    })
    expect(c.mqtt.port).toBe(0)
    expect(c.mqtt.host).toBe('127.0.0.1')
    // A variable's relative path is the user's, from the current folder.
    expect(c.dataDir).toBe(path.resolve('gwdata'))
    expect(c.http).toMatchObject({ port: 0, host: 'localhost', token: 'another-token-0123456789' })
    expect(c.auth.enabled).toBe(false)
    expect(c.log).toEqual({ level: 'warn', format: 'pretty' })
    expect(loadGatewayConfig({ env: { OUTPOST_AUTH: 'on' } }).auth.enabled).toBe(true)
  })

  it('takes an empty variable as unset', () => {
    expect(loadGatewayConfig({ file: file(FULL_YAML), env: { OUTPOST_MQTT_PORT: '' } }).mqtt.port).toBe(1884)
  })

  const bad: [string, string, string][] = [
    ['OUTPOST_MQTT_PORT', 'abc', 'OUTPOST_MQTT_PORT "abc" is not a port'],
    ['OUTPOST_MQTT_PORT', '65536', 'OUTPOST_MQTT_PORT "65536" is not a port'],
    ['OUTPOST_MQTT_HOST', 'a host', 'OUTPOST_MQTT_HOST "a host" is not a host'],
    ['OUTPOST_HTTP_PORT', '-1', 'OUTPOST_HTTP_PORT "-1" is not a port'],
    ['OUTPOST_HTTP_HOST', 'x/y', 'OUTPOST_HTTP_HOST "x/y" is not a host'],
    ['OUTPOST_HTTP_TOKEN', 'short', 'OUTPOST_HTTP_TOKEN is too short'],
    ['OUTPOST_AUTH', 'yes', 'OUTPOST_AUTH "yes" is not accepted; expected on or off'],
    ['OUTPOST_LOG_LEVEL', 'loud', 'OUTPOST_LOG_LEVEL "loud" is not a log level'],
    ['OUTPOST_LOG_FORMAT', 'xml', 'OUTPOST_LOG_FORMAT "xml" is not a log format'],
  ]
  for (const [name, value, wanted] of bad) {
    it(`names ${name}=${value}`, () => {
      const err = errorOf(undefined, { [name]: value })
      expect(err.code).toBe(ErrorCode.BAD_ARGUMENT)
      expect(err.message).toContain(wanted)
    })
  }

  it('never echoes a token it refuses', () => {
    expect(errorOf(undefined, { OUTPOST_HTTP_TOKEN: 'tiny-secret' }).message).not.toContain('tiny-secret')
    expect(errorOf(file('http: { token: tiny-secret }\n')).message).not.toContain('tiny-secret')
  })

  it('refuses a token a client cannot send: spaces only, or with a line end read along from a file', () => {
    for (const token of [' '.repeat(16), 'abcdefghijklmnop\n', 'abcdefgh ijklmnop']) {
      const err = errorOf(undefined, { OUTPOST_HTTP_TOKEN: token })
      expect(err.code).toBe(ErrorCode.BAD_ARGUMENT)
      expect(err.message).toContain('no spaces, line ends or other control characters')
      expect(err.message).not.toContain('abcdefgh')
    }
  })
})

describe('formatConfig', () => {
  it('prints the effective configuration as YAML with the token redacted, and it reads back', () => {
    const f = file(FULL_YAML)
    const c = loadGatewayConfig({ file: f, env: {} })
    const text = formatConfig(c)
    expect(text).not.toContain('s3cret-token-of-some-length')
    expect(text).toContain('token: <redacted>')
    expect(text).toContain(f)
    const back = YAML.parse(text) as Record<string, unknown>
    expect(back).toEqual({ ...structuredClone(c), source: undefined, http: { ...c.http, token: '<redacted>' } } as unknown as Record<string, unknown>)
  })

  it('prints no token line when there is none', () => {
    expect(formatConfig(loadGatewayConfig({ env: {} }))).not.toContain('token')
  })
})
