// What a device bundle leaves out or swaps: code of its dependencies that a device never runs
// (browser timers and detection, worker-thread log transports, WebSocket and SOCKS transports, a
// copy of Node's own streams, an optional native decoder, SQLite features the stores do not use)
// or that a smaller stand-in does as well, as an esbuild plugin. Each entry says why that is
// safe; the bundle is run for real with them (test/build/bundle-runs.test.ts).
import { realpathSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import type { Plugin } from 'esbuild'

/** One module (or one file of a package) swapped in device bundles. */
export interface DeviceStub {
  /** A bare import specifier (exactly this), or `<package>/<file>` inside node_modules when `file` is set. */
  module: string
  /** True: `module` is a file of a package, replaced wherever it is required from. */
  file?: boolean
  /** `node:<name>`: Node's own module; otherwise a file under build/stubs/. */
  with: string
  why: string
}

/** The modules a device bundle swaps, and why. */
export const DEVICE_STUBS: readonly DeviceStub[] = [
  { module: 'node:module', with: 'node-module.ts', why: "Node's module API, not in Node's startup snapshot (0.3-0.5 ms of every start to compile it): the bundled code calls only createRequire, and only after ready or never, so it is loaded at that first call" },
  { module: 'module', with: 'node-module.ts', why: 'node:module by its name without the prefix (cbor-x imports it so, for its optional native decoder, which bundles leave out)' },
  { module: 'readable-stream', with: 'node:stream', why: "a copy of Node's streams for browsers and old Node (MQTT.js, bl): Node 20's own is the same API" },
  { module: 'worker-timers', with: 'worker-timers.ts', why: "MQTT.js's keepalive uses worker timers only in a browser; under Node, the global timers" },
  { module: 'debug', with: 'debug.cjs', why: "MQTT.js's trace lines: a small `debug` reading the same DEBUG variable" },
  { module: 'lru-cache', with: 'lru-cache.ts', why: 'MQTT 5 topic aliases in MQTT.js: the few Map operations they use, not the whole package' },
  { module: 'ws', with: 'left-out.cjs', why: "MQTT.js's WebSocket transport: devices connect over TCP or TLS" },
  { module: 'socks', with: 'left-out.cjs', why: "MQTT.js's SOCKS proxy support: devices connect to their broker directly" },
  { module: 'pino/lib/transport.js', file: true, with: 'pino-left-out.cjs', why: 'pino transports (a worker thread each): a device logs JSON lines to stdout' },
  { module: 'thread-stream', with: 'pino-left-out.cjs', why: 'the worker threads of pino transports' },
  { module: 'pino/lib/multistream.js', file: true, with: 'pino-left-out.cjs', why: 'pino.multistream: the runtime writes to one stream' },
  { module: '@pinojs/redact', with: 'pino-left-out.cjs', why: "pino's redact option: the runtime's logger does not set it (URLs are redacted before logging)" },
  { module: 'sonic-boom', with: 'sonic-boom.cjs', why: "pino's destination: a device writes its log lines synchronously to one descriptor (stdout), which is all the stand-in does (no asynchronous buffering, no reopen), waiting on a full pipe for a second at most, then dropping and counting lines" },
  { module: 'safe-stable-stringify', with: 'safe-stable-stringify.cjs', why: "pino's writer for a log object JSON.stringify refuses (a cycle, a BigInt): the same text for pino's options, without the other options" },
  { module: 'bindings', with: 'bindings.cjs', why: "better-sqlite3's addon lookup in node_modules: the bundle gives the addon beside it (nativeBinding)" },
  { module: 'cbor-extract', with: 'absent.cjs', why: "cbor-x's optional native decoder (an addon per platform): cbor-x decodes in JavaScript without it" },
  { module: 'bl', with: 'bl.cjs', why: "mqtt-packet's parser keeps received bytes in a bl list and uses none of its stream: the list methods it calls, answering as bl's" },
  { module: 'process-nextick-args', with: 'node:process', why: "mqtt-packet's writeToStream takes nextTick from it, and under Node it is `process` itself" },
  { module: 'rfdc/default', with: 'rfdc-default.cjs', why: "MQTT.js deep-copies outgoing publish packets with rfdc's default copy: the same copy, without rfdc's variants for cycles and prototypes" },
  { module: 'mqtt/build/lib/is-browser.js', file: true, with: 'mqtt-is-browser.cjs', why: "MQTT.js's browser detection: a device runs under Node, where every answer is false" },
  { module: 'mqtt/build/lib/get-timer.js', file: true, with: 'mqtt-get-timer.cjs', why: "MQTT.js's keepalive timer choice: under Node, the global setInterval" },
  { module: 'mqtt-packet/generate.js', file: true, with: 'mqtt-packet-generate.cjs', why: "mqtt-packet's generate: MQTT.js writes packets with writeToStream and never calls it" },
  { module: 'pino-std-serializers/index.js', file: true, with: 'pino-std-serializers.cjs', why: "pino's serializers: the runtime's logger uses those of errors (the package's own files); those of HTTP requests and responses, which a device never logs, are left out" },
  { module: 'pino/lib/caller.js', file: true, with: 'pino-caller.cjs', why: "the files on pino's call stack, asked for at each pino() call only to find a transport's target: device bundles have no transports" },
  { module: 'pino/lib/time.js', file: true, with: 'pino-time.cjs', why: "pino.stdTimeFunctions: the same functions but isoTimeNano, which the runtime's logger does not use and which reads the monotonic clock as pino loads" },
  { module: 'mqtt/build/lib/handlers/auth.js', file: true, with: 'mqtt-auth.cjs', why: "MQTT.js's handler of MQTT 5 AUTH packets (enhanced authentication): the runtime's bridge never asks for it, so to a device an AUTH packet is a protocol error, answered as MQTT.js answers it then" },
  { module: 'pino/lib/redaction.js', file: true, with: 'pino-left-out.cjs', why: "pino's redact option (with @pinojs/redact above): the runtime's logger does not set it" },
  ...['function', 'aggregate', 'table', 'backup', 'serialize'].map((m) => ({
    module: `better-sqlite3/lib/methods/${m}.js`,
    file: true,
    with: 'sqlite-left-out.cjs',
    why: `better-sqlite3's Database#${m}: the runtime's SQLite stores prepare statements, run transactions and pragmas, and never call it`,
  })),
]

/** A line of a dependency that a device bundle has written differently, and why. */
export interface DevicePatch {
  /** `<package>/<file>` inside node_modules. */
  file: string
  /** The text replaced. A build fails when the file no longer has it: the package changed, look again. */
  replace: string
  with: string
  why: string
}

/**
 * The lines a device bundle writes differently: requires of Node built-ins that a dependency
 * makes when it is loaded, for something a device uses late or never. Each costs the start of
 * every device (measured with `require` in an ES module under Node 20.20: node:assert 3.5 ms,
 * node:worker_threads 3.3 ms, against 37 ms for a bare Node start).
 */
export const DEVICE_PATCHES: readonly DevicePatch[] = [
  {
    file: 'pino/lib/tools.js',
    replace: "const { isMainThread } = require('worker_threads')",
    with: 'const isMainThread = true',
    why: "pino reads isMainThread only to end an asynchronous log stream when the process exits; a bundle is the main script of its process (node <device>.cjs, from the launcher or outpost device), so node:worker_threads is not loaded to ask",
  },
]

/**
 * Error classes of dependencies that name themselves by their class alone. A bundle is minified
 * without keepNames, which renames classes: the plugin writes these names back, so that pino logs
 * such an error with the same `type` (its class's name) and util.inspect prints it as before.
 * (The runtime's own error classes write their names out themselves: runtime/errors.ts.)
 */
export const NAMED_ERROR_CLASSES: readonly { file: string; classes: readonly string[] }[] = [
  { file: 'better-sqlite3/lib/sqlite-error.js', classes: ['SqliteError'] },
  { file: 'mqtt/build/lib/shared.js', classes: ['ErrorWithReasonCode', 'ErrorWithSubackPacket'] },
]

/** Where the stub files are: build/stubs/ of the project at `root`. */
export const stubsDir = (root: string): string => path.join(root, 'build', 'stubs')

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')

/**
 * The esbuild plugin: swaps DEVICE_STUBS, rewrites the lines of DEVICE_PATCHES, routes `better-sqlite3` to build/stubs/better-sqlite3.ts
 * (the package with the addon beside the bundle), writes back the names of NAMED_ERROR_CLASSES,
 * and keeps only name and version of MQTT.js's package.json (it reads the version; the whole
 * file is 4 KB).
 */
export function deviceStubs(root: string): Plugin {
  // Where the stand-ins really are (a project's build/ may be a link): what they import beside
  // them (the runtime's modules) is found from there.
  let dir = stubsDir(root)
  try {
    dir = realpathSync(dir)
  } catch {
    // Not there: the build says which stand-in it cannot find.
  }
  const sqliteShim = path.join(dir, 'better-sqlite3.ts')
  const modules = DEVICE_STUBS.filter((s) => s.file !== true)
  const files = DEVICE_STUBS.filter((s) => s.file === true)
  const byModule = new Map(modules.map((s) => [s.module, s]))
  const moduleFilter = new RegExp(`^(${modules.map((s) => escape(s.module)).join('|')})$`)
  const fileOf = (p: string): DeviceStub | undefined => files.find((s) => p.split(path.sep).join('/').endsWith(`/node_modules/${s.module}`))
  const fileFilter = new RegExp(`[\\\\/]node_modules[\\\\/](${files.map((s) => s.module.split('/').map(escape).join('[\\\\/]')).join('|')})$`)
  const namedOf = (p: string): (typeof NAMED_ERROR_CLASSES)[number] | undefined => NAMED_ERROR_CLASSES.find((n) => p.split(path.sep).join('/').endsWith(`/node_modules/${n.file}`))
  const namedFilter = new RegExp(`[\\\\/]node_modules[\\\\/](${NAMED_ERROR_CLASSES.map((n) => n.file.split('/').map(escape).join('[\\\\/]')).join('|')})$`)
  const patchOf = (p: string): DevicePatch | undefined => DEVICE_PATCHES.find((d) => p.split(path.sep).join('/').endsWith(`/node_modules/${d.file}`))
  const patchFilter = new RegExp(`[\\\\/]node_modules[\\\\/](${DEVICE_PATCHES.map((d) => d.file.split('/').map(escape).join('[\\\\/]')).join('|')})$`)
  return {
    name: 'outpost-device-stubs',
    setup(build) {
      build.onResolve({ filter: moduleFilter }, (args) => {
        const stub = byModule.get(args.path)!
        if (stub.with.startsWith('node:')) return { path: stub.with, external: true }
        const file = path.join(dir, stub.with)
        // A stand-in's own import of what it stands in for (node:module's) goes to the original.
        return args.importer === file ? undefined : { path: file }
      })
      // Each file stood in for is the stand-in, required: a stand-in that serves several files
      // (better-sqlite3's five methods, pino's four parts) is in the bundle once, not once a file.
      build.onLoad({ filter: fileFilter }, (args) => {
        const stub = fileOf(args.path)!
        return { contents: `module.exports = require(${JSON.stringify(`./${stub.with}`)})`, loader: 'js', resolveDir: dir }
      })
      // The shim's own import of the package goes to the package.
      build.onResolve({ filter: /^better-sqlite3$/ }, (args) => (args.importer === sqliteShim ? undefined : { path: sqliteShim }))
      build.onLoad({ filter: namedFilter }, async (args) => {
        const { classes } = namedOf(args.path)!
        // As a function's own `name` is: not writable, not enumerable, configurable.
        const names = classes.map((c) => `Object.defineProperty(${c}, 'name', { value: ${JSON.stringify(c)}, configurable: true });`).join('\n')
        return { contents: `${await readFile(args.path, 'utf8')}\n${names}\n`, loader: 'js', resolveDir: path.dirname(args.path) }
      })
      build.onLoad({ filter: patchFilter }, async (args) => {
        const patch = patchOf(args.path)!
        const source = await readFile(args.path, 'utf8')
        if (!source.includes(patch.replace)) throw new Error(`${patch.file} no longer has \`${patch.replace}\` (build/device-stubs.ts DEVICE_PATCHES): the package changed; look at the patch again`)
        return { contents: source.replace(patch.replace, patch.with), loader: 'js', resolveDir: path.dirname(args.path) }
      })
      build.onLoad({ filter: /[\\/]node_modules[\\/]mqtt[\\/]package\.json$/ }, async (args) => {
        const pkg = JSON.parse(await readFile(args.path, 'utf8')) as { name: string; version: string }
        return { contents: JSON.stringify({ name: pkg.name, version: pkg.version }), loader: 'json' }
      })
    },
  }
}
