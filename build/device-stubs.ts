// What a device bundle leaves out or swaps: code of its dependencies that a device never runs
// (browser timers, worker-thread log transports, WebSocket and SOCKS transports, a copy of Node's
// own streams, an optional native decoder), as an esbuild plugin. Each entry says why that is
// safe; the bundle is run for real with them (test/build/bundle-runs.test.ts).
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
  { module: 'bindings', with: 'bindings.cjs', why: "better-sqlite3's addon lookup in node_modules: the bundle gives the addon beside it (nativeBinding)" },
  { module: 'cbor-extract', with: 'absent.cjs', why: "cbor-x's optional native decoder (an addon per platform): cbor-x decodes in JavaScript without it" },
]

/** Where the stub files are: build/stubs/ of the project at `root`. */
export const stubsDir = (root: string): string => path.join(root, 'build', 'stubs')

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')

/**
 * The esbuild plugin: swaps DEVICE_STUBS, routes `better-sqlite3` to build/stubs/better-sqlite3.ts
 * (the package with the addon beside the bundle), and keeps only name and version of MQTT.js's
 * package.json (it reads the version; the whole file is 4 KB).
 */
export function deviceStubs(root: string): Plugin {
  const dir = stubsDir(root)
  const sqliteShim = path.join(dir, 'better-sqlite3.ts')
  const modules = DEVICE_STUBS.filter((s) => s.file !== true)
  const files = DEVICE_STUBS.filter((s) => s.file === true)
  const byModule = new Map(modules.map((s) => [s.module, s]))
  const moduleFilter = new RegExp(`^(${modules.map((s) => escape(s.module)).join('|')})$`)
  const fileOf = (p: string): DeviceStub | undefined => files.find((s) => p.split(path.sep).join('/').endsWith(`/node_modules/${s.module}`))
  const fileFilter = new RegExp(`[\\\\/]node_modules[\\\\/](${files.map((s) => s.module.split('/').map(escape).join('[\\\\/]')).join('|')})$`)
  return {
    name: 'outpost-device-stubs',
    setup(build) {
      build.onResolve({ filter: moduleFilter }, (args) => {
        const stub = byModule.get(args.path)!
        if (stub.with.startsWith('node:')) return { path: stub.with, external: true }
        return { path: path.join(dir, stub.with) }
      })
      build.onLoad({ filter: fileFilter }, async (args) => {
        const stub = fileOf(args.path)!
        return { contents: await readFile(path.join(dir, stub.with), 'utf8'), loader: 'js', resolveDir: dir }
      })
      // The shim's own import of the package goes to the package.
      build.onResolve({ filter: /^better-sqlite3$/ }, (args) => (args.importer === sqliteShim ? undefined : { path: sqliteShim }))
      build.onLoad({ filter: /[\\/]node_modules[\\/]mqtt[\\/]package\.json$/ }, async (args) => {
        const pkg = JSON.parse(await readFile(args.path, 'utf8')) as { name: string; version: string }
        return { contents: JSON.stringify({ name: pkg.name, version: pkg.version }), loader: 'json' }
      })
    },
  }
}
