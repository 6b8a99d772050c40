// Reads the gateway's configuration: a YAML or JSON file checked key by key, then the OUTPOST_*
// variables over it. Every problem becomes one INVALID_CONFIG (or BAD_ARGUMENT for a variable)
// that names the key path and what is accepted there, never a stack trace from deep inside.
import { readFileSync, statSync } from 'node:fs'
import { isIP } from 'node:net'
import path from 'node:path'
import * as v from 'valibot'
import YAML from 'yaml'
import { ErrorCode, OutpostError } from '../../runtime/errors.js'
import { parseLogFormat, parseLogLevel } from '../../runtime/logger.js'
import { isTopicSegment } from '../../runtime/topic-level.js'
import { DEFAULT_ROLES, defaultGatewayConfig, type GatewayConfig, type RoleConfig } from './gateway-config.js'
import { FORWARD_FILE_SCHEMA, forwardFromFile, forwardProblems, redactForward } from './forward-schema.js'
import { strict, wholeNumber } from './schema-kit.js'
import { COMMANDS_FILE_SCHEMA, commandsFromFile, commandsProblems, redactCommands } from './commands-schema.js'

/** Where the gateway keeps its files under the data folder (OUTPOST_DATA_DIR, default .outpost). */
const GATEWAY_SUBDIR = 'gateway'
/** Most problems of one file listed; a file that wrong is better fixed from the top. */
const MAX_PROBLEMS = 8
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/
/** Role names appear in `outpost devices add --role` and in logs: short, no spaces. */
const ROLE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

const invalid = (message: string): OutpostError => new OutpostError(ErrorCode.INVALID_CONFIG, message)
const bad = (message: string): OutpostError => new OutpostError(ErrorCode.BAD_ARGUMENT, message)

const PORT = wholeNumber(0, 65_535, ' (0: a free port)')
const HOST = v.pipe(
  v.string('expected an IP address or a host name such as 127.0.0.1 or localhost'),
  v.check((s) => isIP(s) !== 0 || HOST_NAME.test(s), 'expected an IP address or a host name such as 127.0.0.1 or localhost'),
)
const FILE = v.pipe(v.string('expected a file path'), v.minLength(1, 'expected a file path'))

/**
 * Why `filter` cannot be a role's subscription, or undefined when it can: an MQTT filter for
 * events, `ob/<device or +>/evt/` followed by levels that are `+`, topic levels, or a last `#`.
 */
export function eventFilterProblem(filter: string): string | undefined {
  const levels = filter.split('/')
  if (levels[0] !== 'ob' || levels[2] !== 'evt' || levels.length < 4) return 'expected an event filter under ob/+/evt/… or ob/<device>/evt/…, e.g. ob/+/evt/thermo/1/+'
  for (let i = 1; i < levels.length; i++) {
    const l = levels[i]!
    if (i === 2 || l === '+') continue
    if (l === '#') {
      if (i === levels.length - 1 && i > 2) continue
      return `'#' may only be the last level, after ob/<device>/evt`
    }
    if (!isTopicSegment(l)) return `level ${i + 1} "${l}" is not a topic level (1 to 128 characters, no '/', '+', '#' or control characters; '+' or a last '#' alone as wildcards)`
  }
  return undefined
}

const ROLE = strict({
  subscribe: v.array(
    v.pipe(
      v.string('expected an event filter (a string) such as ob/+/evt/#'),
      v.rawCheck(({ dataset, addIssue }) => {
        const problem = dataset.typed ? eventFilterProblem(dataset.value) : undefined
        if (problem !== undefined) addIssue({ message: problem })
      }),
    ),
    'expected a list of event filters, e.g. [ob/+/evt/#]',
  ),
})

/**
 * What a bearer token may hold: visible ASCII. A client trims the spaces around a header's value
 * and cannot send a line end in it: a token of spaces, or one read from a file with its newline,
 * was taken, and every request was then refused.
 */
const TOKEN_CHARS = /^[\x21-\x7e]*$/
const TOKEN_RULE = 'expected letters, digits and punctuation only (no spaces, line ends or other control characters: a client cannot send them in its Authorization header)'

/** Keys whose values are secrets: a problem with one names its length, never its value. */
const SECRET_KEY = /(^|\.)(token|pass|password)$/

/** The file's shape: every key optional, defaults applied after. */
const FILE_SCHEMA = strict({
  dataDir: v.optional(v.pipe(v.string('expected a folder path'), v.minLength(1, 'expected a folder path'))),
  mqtt: v.optional(
    strict({
      host: v.optional(HOST),
      port: v.optional(PORT),
      maxPacketBytes: v.optional(wholeNumber(0, 268_435_455, ' (bytes; 0: no limit)')),
      // 7: a command topic (ob/<src>/cmd/<target>/<service>/<version>/<command>), the deepest the runtime uses.
      maxTopicLevels: v.optional(wholeNumber(7, 100, ' (the runtime\'s command topics have 7)')),
      maxConnections: v.optional(wholeNumber(1, 1_000_000)),
      stallMs: v.optional(wholeNumber(0, 60_000, ' (ms; 0: aedes\' drainTimeout alone, 60 s, the most)')),
      sessionMaxMessages: v.optional(wholeNumber(0, 100_000_000)),
      sessionMaxBytes: v.optional(wholeNumber(0, Number.MAX_SAFE_INTEGER)),
      sessionsMaxBytes: v.optional(wholeNumber(0, Number.MAX_SAFE_INTEGER)),
      retainedMaxTopics: v.optional(wholeNumber(0, 100_000_000)),
      retainedMaxBytes: v.optional(wholeNumber(0, Number.MAX_SAFE_INTEGER)),
      tls: v.optional(strict({ port: PORT, certFile: FILE, keyFile: FILE, caFile: v.optional(FILE) })),
      websocket: v.optional(
        strict({
          port: PORT,
          path: v.pipe(v.string('expected a URL path such as /mqtt'), v.regex(/^\/[\x21-\x7e]*$/, 'expected a URL path such as /mqtt')),
        }),
      ),
    }),
  ),
  auth: v.optional(
    strict({
      enabled: v.optional(v.boolean('expected true or false')),
      roles: v.optional(
        v.record(v.pipe(v.string(), v.regex(ROLE_NAME, 'expected a role name: letters, digits, ".", "_" or "-" (at most 64)')), ROLE, 'expected a mapping of role names to { subscribe: [filters] }'),
      ),
    }),
  ),
  persistence: v.optional(v.picklist(['sqlite', 'memory'], 'expected sqlite or memory')),
  http: v.optional(
    strict({
      enabled: v.optional(v.boolean('expected true or false')),
      host: v.optional(HOST),
      port: v.optional(PORT),
      token: v.optional(v.pipe(v.string('expected a string of at least 16 characters'), v.minLength(16, 'expected a string of at least 16 characters'), v.regex(TOKEN_CHARS, TOKEN_RULE))),
    }),
  ),
  log: v.optional(
    strict({
      level: v.optional(v.picklist(LOG_LEVELS, `expected one of ${LOG_LEVELS.join(', ')}`)),
      format: v.optional(v.picklist(['pretty', 'json'], 'expected pretty or json')),
    }),
  ),
  forward: v.optional(FORWARD_FILE_SCHEMA),
  commands: v.optional(COMMANDS_FILE_SCHEMA),
})
type FileConfig = v.InferOutput<typeof FILE_SCHEMA>

/** A value as an error message quotes it: short, on one line. */
function quote(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value)
  return s.length > 60 ? `${s.slice(0, 57)}...` : s
}

/** One line a problem: `mqtt.port: expected …, got "abc"`; the first problem of each key only. */
function describeIssues(issues: readonly v.BaseIssue<unknown>[]): string[] {
  const lines = new Map<string, string>()
  for (const issue of issues) {
    const where = (issue.path ?? []).map((p, i) => (p.type === 'array' ? `[${String(p.key)}]` : `${i === 0 ? '' : '.'}${String(p.key)}`)).join('') || '(top level)'
    if (lines.has(where)) continue
    // An unknown or missing key has no value worth quoting.
    const keyOnly = issue.type === 'strict_object' && (issue.expected === 'never' || issue.received === 'undefined')
    const got = SECRET_KEY.test(where) && typeof issue.input === 'string' ? `a secret of ${issue.input.length} characters (not shown)` : quote(issue.input)
    lines.set(where, keyOnly ? `${where}: ${issue.message}` : `${where}: ${issue.message}, got ${got}`)
  }
  return [...lines.values()]
}

/** Largest config file read; a real one has a few dozen lines. */
const MAX_CONFIG_BYTES = 1024 * 1024

/** The file's text as plain data. @throws INVALID_CONFIG for a file that cannot be read or parsed */
function readConfigFile(file: string, name: string): unknown {
  const ext = path.extname(file).toLowerCase()
  if (!['.yaml', '.yml', '.json'].includes(ext)) throw invalid(`${name}: unknown file type "${ext || '(none)'}"; expected a .yaml, .yml or .json file`)
  // A pipe or a device named gateway.yaml would hang the start or be read without end.
  let st: ReturnType<typeof statSync> | undefined
  try {
    st = statSync(file)
  } catch {
    // readFileSync below names what is wrong.
  }
  // The whole path: a relative one (a typo in a folder's name, say) shows where it was looked for.
  if (st !== undefined && !st.isFile() && !st.isDirectory()) throw invalid(`${file}: cannot read the config file (not a regular file)`)
  if (st !== undefined && st.size > MAX_CONFIG_BYTES) throw invalid(`${name}: the config file has ${st.size} bytes; a config file has at most ${MAX_CONFIG_BYTES}`)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'a folder, not a file' : code === 'EACCES' ? 'permission denied' : (code ?? 'unreadable')
    throw invalid(`${file}: cannot read the config file (${why})`)
  }
  if (text.trim() === '') throw invalid(`${name}: the config file is empty; expected a mapping such as "mqtt: { port: 1883 }"`)
  if (ext === '.json') {
    let data: unknown
    try {
      data = JSON.parse(text) as unknown
    } catch (err) {
      throw invalid(`${name}: not valid JSON: ${(err as Error).message}`)
    }
    // JSON.parse keeps the last of a key given twice; a YAML file with one is refused, and so is this.
    const twice = YAML.parseDocument(text, { uniqueKeys: true, schema: 'json' }).errors.find((e) => e.code === 'DUPLICATE_KEY')
    const at = twice?.linePos?.[0]
    if (twice !== undefined) throw invalid(`${name}: not valid JSON${at === undefined ? '' : ` at line ${at.line}, column ${at.col}`}: a key is given twice in one object`)
    return data
  }
  const doc = YAML.parseDocument(text, { uniqueKeys: true })
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!
    const at = e.linePos?.[0]
    // The library's message ends with its position and a picture of the line: one line of it is kept.
    const what = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')
    throw invalid(`${name}: not valid YAML${at === undefined ? '' : ` at line ${at.line}, column ${at.col}`}: ${what}`)
  }
  try {
    return doc.toJS({ maxAliasCount: 100 }) as unknown
  } catch (err) {
    // Aliases that expand past the bound (a "billion laughs" file), or an alias to nothing.
    throw invalid(`${name}: not usable YAML: ${(err as Error).message.split('\n')[0]}`)
  }
}

/** Where the config came from, and what it asks for after the defaults. */
function fromFile(file: string, defaultDataDir: string): GatewayConfig {
  const abs = path.resolve(file)
  const name = path.basename(abs)
  const data = readConfigFile(abs, name)
  if (data === null || typeof data !== 'object' || Array.isArray(data)) throw invalid(`${name}: expected a mapping of keys (mqtt, auth, http, …) at the top, got ${quote(data)}`)
  const result = v.safeParse(FILE_SCHEMA, data, { abortEarly: false })
  if (!result.success) {
    const lines = describeIssues(result.issues)
    const more = lines.length > MAX_PROBLEMS ? [`and ${lines.length - MAX_PROBLEMS} more`] : []
    throw invalid(`${name}: ${[...lines.slice(0, MAX_PROBLEMS), ...more].join('; ')}`)
  }
  const f: FileConfig = result.output
  const crossed = [...(f.forward === undefined ? [] : forwardProblems(f.forward)), ...(f.commands === undefined ? [] : commandsProblems(f.commands))]
  if (crossed.length > 0) throw invalid(`${name}: ${crossed.slice(0, MAX_PROBLEMS).join('; ')}`)
  const dir = path.dirname(abs)
  const resolve = (p: string): string => path.resolve(dir, p)
  const base = defaultGatewayConfig()
  const roles: Record<string, RoleConfig> = { ...structuredClone(DEFAULT_ROLES) }
  for (const [role, r] of Object.entries(f.auth?.roles ?? {})) roles[role] = { subscribe: [...r.subscribe] }
  const tls = f.mqtt?.tls
  return {
    dataDir: f.dataDir === undefined ? defaultDataDir : resolve(f.dataDir),
    mqtt: {
      ...base.mqtt,
      ...withoutUndefined({ host: f.mqtt?.host, port: f.mqtt?.port, maxPacketBytes: f.mqtt?.maxPacketBytes, maxTopicLevels: f.mqtt?.maxTopicLevels, maxConnections: f.mqtt?.maxConnections, stallMs: f.mqtt?.stallMs, sessionMaxMessages: f.mqtt?.sessionMaxMessages, sessionMaxBytes: f.mqtt?.sessionMaxBytes, sessionsMaxBytes: f.mqtt?.sessionsMaxBytes, retainedMaxTopics: f.mqtt?.retainedMaxTopics, retainedMaxBytes: f.mqtt?.retainedMaxBytes }),
      ...(tls === undefined ? {} : { tls: { port: tls.port, certFile: resolve(tls.certFile), keyFile: resolve(tls.keyFile), ...(tls.caFile === undefined ? {} : { caFile: resolve(tls.caFile) }) } }),
      ...(f.mqtt?.websocket === undefined ? {} : { websocket: { ...f.mqtt.websocket } }),
    },
    auth: { enabled: f.auth?.enabled ?? true, roles },
    persistence: f.persistence ?? 'sqlite',
    http: { ...base.http, enabled: true, ...withoutUndefined({ enabled: f.http?.enabled, host: f.http?.host, port: f.http?.port, token: f.http?.token }) },
    log: { ...base.log, ...withoutUndefined({ level: f.log?.level, format: f.log?.format }) },
    ...(f.forward === undefined ? {} : { forward: forwardFromFile(f.forward) }),
    commands: commandsFromFile(f.commands),
    source: abs,
  }
}

function withoutUndefined<T extends object>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> }
}

/** A variable's value, with an empty one taken as unset (as bin/cli-args.ts reads them). */
const envOf = (env: NodeJS.ProcessEnv, name: string): string | undefined => (env[name] === '' ? undefined : env[name])

/** A port from a flag or a variable (bin/cli-args.ts reads --port with it too). @throws BAD_ARGUMENT naming `where` */
export function parsePort(value: string, where: string): number {
  const n = /^\d{1,5}$/.test(value) ? Number(value) : NaN
  if (!(n >= 0 && n <= 65_535)) throw bad(`${where} "${value}" is not a port; expected an integer from 0 to 65535 (0: a free port)`)
  return n
}

/** A host from a flag or a variable. @throws BAD_ARGUMENT naming `where` */
export function parseHost(value: string, where: string): string {
  if (isIP(value) === 0 && !HOST_NAME.test(value)) throw bad(`${where} "${value}" is not a host; expected an IP address or a host name such as 127.0.0.1 or localhost`)
  return value
}

/** The variables that override the file, applied in place. @throws BAD_ARGUMENT naming the variable */
function applyEnv(config: GatewayConfig, env: NodeJS.ProcessEnv): void {
  const get = (name: string): string | undefined => envOf(env, name)
  let x: string | undefined
  if ((x = get('OUTPOST_MQTT_PORT')) !== undefined) config.mqtt.port = parsePort(x, 'OUTPOST_MQTT_PORT')
  if ((x = get('OUTPOST_MQTT_HOST')) !== undefined) config.mqtt.host = parseHost(x, 'OUTPOST_MQTT_HOST')
  if ((x = get('OUTPOST_GATEWAY_DATA_DIR')) !== undefined) config.dataDir = path.resolve(x)
  if ((x = get('OUTPOST_HTTP_PORT')) !== undefined) config.http.port = parsePort(x, 'OUTPOST_HTTP_PORT')
  if ((x = get('OUTPOST_HTTP_HOST')) !== undefined) config.http.host = parseHost(x, 'OUTPOST_HTTP_HOST')
  if ((x = get('OUTPOST_HTTP_TOKEN')) !== undefined) {
    // Not echoed: it is a secret.
    if (x.length < 16) throw bad(`OUTPOST_HTTP_TOKEN is too short (${x.length} characters); expected at least 16`)
    if (!TOKEN_CHARS.test(x)) throw bad(`OUTPOST_HTTP_TOKEN (${x.length} characters, not shown) is not accepted; ${TOKEN_RULE}`)
    config.http.token = x
  }
  if ((x = get('OUTPOST_AUTH')) !== undefined) {
    if (x !== 'on' && x !== 'off') throw bad(`OUTPOST_AUTH "${x}" is not accepted; expected on or off`)
    config.auth.enabled = x === 'on'
  }
  // The logger's own parsers: one wording for --log-level, OUTPOST_LOG_LEVEL and the file.
  if ((x = get('OUTPOST_LOG_LEVEL')) !== undefined) config.log.level = parseLogLevel(x, 'OUTPOST_LOG_LEVEL')
  if ((x = get('OUTPOST_LOG_FORMAT')) !== undefined) config.log.format = parseLogFormat(x, 'OUTPOST_LOG_FORMAT')
}

/** What loadGatewayConfig reads. */
export interface LoadConfigOptions {
  /** A .yaml, .yml or .json file; relative paths in it resolve against its folder. None: the development defaults. */
  file?: string
  /** OUTPOST_* variables that override the file (and OUTPOST_DATA_DIR for the default data folder). */
  env: NodeJS.ProcessEnv
}

/**
 * The gateway's configuration from a file (if any) and the environment. With a file, authentication
 * is on, broker state is in SQLite and HTTP listens on 127.0.0.1:8080; without one, the development defaults (authentication off, broker state in
 * memory) with HTTP on. Data goes to the file's `dataDir` (relative to the file's folder), else to
 * `<OUTPOST_DATA_DIR or .outpost>/gateway` from the current folder.
 * @throws INVALID_CONFIG naming the file, the key path and what is accepted there
 * @throws BAD_ARGUMENT naming a variable with a wrong value
 */
export function loadGatewayConfig(opts: LoadConfigOptions): GatewayConfig {
  const defaultDataDir = path.resolve(envOf(opts.env, 'OUTPOST_DATA_DIR') ?? '.outpost', GATEWAY_SUBDIR)
  let config: GatewayConfig
  if (opts.file !== undefined) {
    config = fromFile(opts.file, defaultDataDir)
  } else {
    config = defaultGatewayConfig()
    config.dataDir = defaultDataDir
    config.http.enabled = true
  }
  applyEnv(config, opts.env)
  return config
}

/** Shown instead of a secret. */
export const REDACTED = '<redacted>'

/** The effective configuration as YAML, secrets (http.token) replaced by `<redacted>`. */
export function formatConfig(config: GatewayConfig): string {
  const shown = structuredClone(config)
  if (shown.http.token !== undefined) shown.http.token = REDACTED
  if (shown.forward !== undefined) shown.forward = redactForward(shown.forward, REDACTED)
  shown.commands = redactCommands(shown.commands, REDACTED)
  const { source, dataDir, ...rest } = shown
  const head = `# outpost gateway: effective configuration${source === undefined ? ' (no config file: development defaults)' : ` from ${source}`}\n`
  return head + YAML.stringify({ ...(dataDir === undefined ? {} : { dataDir }), ...rest }, { lineWidth: 0 })
}
