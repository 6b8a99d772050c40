// The package as someone else gets it: `npm pack` (which runs `prepare`, the build), the tarball
// unpacked into an app's node_modules/outpost beside only the dependencies package.json declares
// (linked from this checkout: no registry, no native rebuild), then plain `node`, with no tsx
// anywhere the app can resolve, loads every entry point and runs the CLI and the demo's device
// processes, and tsc checks the README's snippet against the shipped .d.ts.
import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import ts from 'typescript'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codeBlocksOf, typecheck } from './typecheck.js'

const run = promisify(execFile)
const ROOT = path.resolve('.')

interface PackageJson {
  version: string
  dependencies: Record<string, string>
  exports: Record<string, string | Record<string, string>>
}
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as PackageJson
/** Every entry point but ./package.json: subpath → its conditions. */
const entries = Object.entries(pkg.exports).filter((e): e is [string, Record<string, string>] => typeof e[1] === 'object')
/** A name each entry point must export (what a user imports it for). */
const EXPECTED: Record<string, string[]> = {
  '.': ['createRuntime', 'defineContract'],
  './runtime': ['createRuntime', 'defineContract', 'defineService', 'OutpostError', 'createMemoryBridge'],
  './contracts': ['defineContract', 'defineService', 'resource'],
  './bridges': ['createMemoryHub', 'createMemoryBridge', 'createMqttBridge'],
  './bridges/nats': ['createNatsBridge'],
  './stores/memory': ['createMemoryStateStore', 'createMemoryOutbox', 'createMemoryInbox', 'createMemoryQueueStore'],
  './stores/sqlite': ['openDeviceDatabase', 'createSqliteStateStore', 'createSqliteOutbox', 'createSqliteInbox', 'createSqliteQueueStore'],
  './gateway': ['startGateway', 'startMqttBroker'],
  './cloud': ['createCloudClient', 'readForwarded'],
}

describe('the packed package, installed', () => {
  let dir: string
  /** The app that installs the package. */
  let app: string
  /** The tarball's files, without their `package/` prefix. */
  let files: string[]

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'outpost-pack-'))
    await run('npm', ['pack', '--pack-destination', dir, '--silent'], { cwd: ROOT, timeout: 120_000 })
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))!
    files = (await run('tar', ['-tzf', path.join(dir, tarball)])).stdout.trim().split('\n').map((f) => f.replace(/^package\//, ''))
    app = path.join(dir, 'app')
    const installed = path.join(app, 'node_modules', 'outpost')
    mkdirSync(installed, { recursive: true })
    await run('tar', ['-xzf', path.join(dir, tarball), '-C', installed, '--strip-components=1'])
    for (const dep of Object.keys(pkg.dependencies)) {
      mkdirSync(path.dirname(path.join(app, 'node_modules', dep)), { recursive: true })
      symlinkSync(path.join(ROOT, 'node_modules', dep), path.join(app, 'node_modules', dep), 'dir')
    }
    writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }))
  }, 150_000)

  afterAll(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  it('ships compiled JavaScript with declarations, the CLI and the devices, and no TypeScript source', () => {
    const shipped = new Set(files)
    for (const [subpath, conditions] of entries) {
      expect(shipped.has(conditions.default!.slice(2)), `${subpath} → ${conditions.default}`).toBe(true)
      expect(shipped.has(conditions.types!.slice(2)), `${subpath} → ${conditions.types}`).toBe(true)
    }
    for (const f of ['bin/outpost.js', 'bin/build.js', 'dist/bin/cli.js', 'dist/devices/thermo/main.js', 'dist/devices/display/main.js']) expect(shipped.has(f), f).toBe(true)
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([])
    expect(files.filter((f) => !f.startsWith('dist/') && !['bin/outpost.js', 'bin/build.js', 'package.json', 'README.md'].includes(f))).toEqual([])
    expect(files.filter((f) => f.endsWith('.map') || path.basename(f).startsWith('.'))).toEqual([])
  })

  it('leaves tsx out of reach of the app', () => {
    expect(() => createRequire(path.join(app, 'index.js')).resolve('tsx')).toThrow()
  })

  it.each(entries.map(([subpath]) => subpath))('loads %s with plain node', async (subpath) => {
    const specifier = subpath === '.' ? 'outpost' : `outpost/${subpath.slice(2)}`
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', `console.log(JSON.stringify(Object.keys(await import(${JSON.stringify(specifier)}))))`], { cwd: app, timeout: 30_000 })
    const names = JSON.parse(stdout) as string[]
    expect(names).toEqual(expect.arrayContaining(EXPECTED[subpath]!))
  }, 30_000)

  it('runs the CLI from the install: version, help, and a device name checked against dist/devices', async () => {
    const cli = path.join(app, 'node_modules', 'outpost', 'bin', 'outpost.js')
    expect((await run(process.execPath, [cli, '--version'], { cwd: app })).stdout.trim()).toBe(pkg.version)
    expect((await run(process.execPath, [cli, '--help'], { cwd: app })).stdout).toContain('outpost device <name>')
    const refused = await run(process.execPath, [cli, 'device', 'nope'], { cwd: app }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    )
    expect(refused.code).toBe(2)
    expect(refused.stderr.trim()).toBe('outpost: BAD_ARGUMENT: device "nope" is not a device of this project; expected one of display, thermo (a name under devices/, not a path)')
  }, 30_000)

  it('runs the demo from the install: the gateway and two device processes on compiled code', async () => {
    const cli = path.join(app, 'node_modules', 'outpost', 'bin', 'outpost.js')
    const { stdout } = await run(process.execPath, [cli, 'demo', '--port', '0', '--duration', '4', '--outage', '0', '--log-format', 'pretty'], {
      cwd: app,
      env: { ...process.env, OUTPOST_SAMPLE_MS: '300', OUTPOST_DATA_DIR: path.join(dir, 'data') },
      timeout: 40_000,
    })
    expect(stdout).toMatch(/\[display-1\] display shows "[\d.]+ °C"/)
    expect(stdout).toMatch(/\[thermo-1 \] reading shown on display/)
    expect(stdout).toContain('[demo     ] stopped')
    expect(stdout).not.toMatch(/ERROR/)
  }, 50_000)

  it('keeps a device of a broken install running offline: MQTT.js without its dependencies is tried again, not the end of the process', async () => {
    // A second app whose MQTT.js is a copy, with none of its own dependencies where it can find them.
    const broken = path.join(dir, 'broken')
    const installed = path.join(broken, 'node_modules', 'outpost')
    mkdirSync(installed, { recursive: true })
    await run('tar', ['-xzf', path.join(dir, readdirSync(dir).find((f) => f.endsWith('.tgz'))!), '-C', installed, '--strip-components=1'])
    for (const dep of Object.keys(pkg.dependencies)) {
      const to = path.join(broken, 'node_modules', dep)
      mkdirSync(path.dirname(to), { recursive: true })
      if (dep === 'mqtt') await run('cp', ['-r', path.join(ROOT, 'node_modules', dep), to])
      else symlinkSync(path.join(ROOT, 'node_modules', dep), to, 'dir')
    }
    const child = spawn(process.execPath, [path.join(installed, 'dist', 'devices', 'display', 'main.js')], {
      cwd: broken,
      env: { ...process.env, OUTPOST_LOG_FORMAT: 'json', OUTPOST_MQTT_URL: 'mqtt://127.0.0.1:9', OUTPOST_DATA_DIR: path.join(broken, 'data') },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (c: Buffer) => (out += c.toString()))
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    const lines = (): { msg: string; err?: string }[] => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string; err?: string })
    try {
      // The first failure at start, then the retry's (100 ms later with the default backoff).
      for (let i = 0; i < 100 && lines().filter((l) => l.err?.includes('the MQTT client could not be loaded')).length < 2; i++) await new Promise((r) => setTimeout(r, 100))
      const failures = lines().filter((l) => l.err?.includes('the MQTT client could not be loaded'))
      expect(failures.map((l) => l.msg)).toEqual(['broker unreachable at start; running offline and retrying', 'the MQTT client could not be loaded; trying again with backoff'])
      expect(child.exitCode).toBe(null) // still running
    } finally {
      child.kill('SIGTERM')
    }
    expect(await exited).toBe(0)
    expect(lines().map((l) => l.msg)).toContain('runtime stopped')
  }, 30_000)

  it('typechecks the README "Writing a service" block against the installed .d.ts', () => {
    const blocks = codeBlocksOf(readFileSync(path.join(ROOT, 'README.md'), 'utf8'), '## Writing a service')
    // If the declarations lost their types (any), this line would not be an error and tsc would say so.
    const probe = '\n// @ts-expect-error: createRuntime takes RuntimeOptions\ncreateRuntime(42)\n'
    const options: ts.CompilerOptions = {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      skipLibCheck: false,
      types: ['node'],
      typeRoots: [path.join(ROOT, 'node_modules', '@types')],
      lib: ['lib.es2022.d.ts'],
    }
    const installed = path.join(app, 'node_modules', 'outpost') + path.sep
    const { diagnostics, resolved } = typecheck(blocks.join('\n') + probe, path.join(app, 'service.ts'), options, (f) => f.startsWith(installed))
    expect(diagnostics).toEqual([])
    for (const [spec, to] of resolved) {
      if (spec.startsWith('outpost/')) expect(to, spec).toBe(path.join(installed, (pkg.exports[`./${spec.slice('outpost/'.length)}`] as Record<string, string>).types!))
    }
    expect(existsSync(path.join(installed, 'runtime'))).toBe(false) // only dist/: the sources were not shipped
  }, 60_000)
})
