// The README's "Build a device bundle" walkthrough, run as a user runs it: every line of the
// section's sh block, in order, through `sh -c`, from the folder of a copy of the project (a
// fresh checkout: sources, package.json, tsconfig, node_modules linked; its CLI compiles its own
// dist/ on first use). Keys, a signed build, a flash onto a folder, the gateway and the device's
// launcher as processes of their own, flash status, a second build over the air, a bad change
// built and flashed over the air and rolled back, and the device still answering a command.
//
// What differs from the README, and only that: `npx outpost` is `node bin/outpost.js` (what npx
// runs in a checkout); /tmp/device and /tmp/bad are folders of this test; the gateway's ports are
// free ones (MQTT 1884 and HTTP 8080 in the README; HTTP moved with OUTPOST_HTTP_PORT, since the
// README's gateway command leaves it at its default); and `git checkout <file>` puts the file's
// bytes back as they were copied (the copy is not a git checkout). The real devices/ is never
// edited: other tests build from it at the same time.
import { spawn } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { freePort, until } from '../helpers/wait.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const SECTION = '## Build a device bundle'
/** What a checkout has that the walkthrough uses (dist/ is left out: the copy's CLI builds it). */
const PROJECT_FILES = ['package.json', 'tsconfig.json', 'tsconfig.build.json', 'bin', 'build', 'devices', 'runtime', 'gateway']
/** A command that ends: generous, other tests share the CPU (the first one compiles dist/). */
const COMMAND_MS = 180_000

/** `s` as a regular expression that matches it literally. */
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')

/** The command lines of the section's ```sh blocks (comment-only and empty lines left out), in order. */
function shellCommandsOf(markdown: string, heading: string): string[] {
  const lines = markdown.split('\n')
  const start = lines.findIndex((l) => l.trim() === heading)
  if (start < 0) throw new Error(`README.md has no section "${heading}"`)
  const commands: string[] = []
  let inSh: boolean | undefined
  for (const line of lines.slice(start + 1)) {
    if (inSh === undefined) {
      if (/^#+ /.test(line)) break
      if (line.startsWith('```')) inSh = /^```(sh|bash|shell)\s*$/.test(line)
    } else if (line.startsWith('```')) {
      inSh = undefined
    } else if (inSh && line.trim() !== '' && !line.trimStart().startsWith('#')) {
      commands.push(line.trim())
    }
  }
  return commands
}

/** This process's environment without what would change where the CLI, gateway or device go. */
const ENV: Record<string, string> = Object.fromEntries(
  Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined && !e[0].startsWith('OUTPOST_') && !['NODE_OPTIONS', 'NODE_PATH', 'DEBUG', 'SOURCE_DATE_EPOCH'].includes(e[0])),
)

interface Finished {
  code: number | null
  out: string
  err: string
}

/** A README line running with sh. */
interface Running {
  /** stdout and stderr so far. */
  out(): string
  stdout(): string
  err(): string
  ended(): boolean
  /** Its exit code once it ended (null: by a signal, or it could not start). */
  closed: Promise<number | null>
  /** Unless it ended: SIGTERM to its process group (sh, and what it started), SIGKILL after 15 s; waits for the end. */
  stop(): Promise<void>
}

describe('README "Build a device bundle", as a user runs it', () => {
  it('keys, build, flash to a folder, gateway, launcher, status, over the air, a bad bundle rolled back', async () => {
    const commands = shellCommandsOf(readFileSync(path.join(ROOT, 'README.md'), 'utf8'), SECTION)
    const tmp = mkdtempSync(path.join(tmpdir(), 'outpost-readme-bundle-'))
    const project = path.join(tmp, 'project')
    const deviceDir = path.join(tmp, 'device')
    const badDir = path.join(tmp, 'bad')
    mkdirSync(project)
    for (const f of PROJECT_FILES) cpSync(path.join(ROOT, f), path.join(project, f), { recursive: true })
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(project, 'node_modules'), 'dir')
    const version = (JSON.parse(readFileSync(path.join(project, 'package.json'), 'utf8')) as { version: string }).version
    const v = esc(version)
    const mqttPort = await freePort()
    const httpPort = await freePort()

    /** The README's line as this test runs it (see the file's head). */
    const local = (line: string): string => {
      const cmd = line
        .replaceAll('npx outpost ', 'node bin/outpost.js ')
        .replaceAll('/tmp/device', deviceDir)
        .replaceAll('/tmp/bad', badDir)
        .replaceAll('--port 1884', `--port ${mqttPort}`)
        .replaceAll('127.0.0.1:1884', `127.0.0.1:${mqttPort}`)
        .replaceAll('127.0.0.1:8080', `127.0.0.1:${httpPort}`)
      expect(cmd).not.toMatch(/\bnpx\b|:1883\b|:1884\b|:8080\b|(?<![\w-])\/tmp\/(device|bad)\b/)
      return cmd
    }
    let next = 0
    /** The README's next command, which must match `pattern`. */
    const readme = (pattern: RegExp): string => {
      const line = commands[next++]
      expect(line, `README command ${next}`).toMatch(pattern)
      return line!
    }

    const processes: Running[] = []
    /**
     * Starts a README line with sh, from the project's folder, in a process group of its own (so
     * that what sh started is stopped with it); collects its output.
     */
    const spawnLine = (line: string, env: Record<string, string> = {}): Running => {
      const child = spawn('sh', ['-c', local(line)], { cwd: project, env: { ...ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
      let out = ''
      let err = ''
      child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
      child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c))
      let ended = false
      const closed = new Promise<number | null>((resolve) => {
        child.once('error', () => resolve(null))
        child.once('close', (code) => resolve(code))
      })
      void closed.then(() => (ended = true))
      const signal = (s: NodeJS.Signals): void => {
        try {
          process.kill(-child.pid!, s)
        } catch {
          // The group is gone already.
        }
      }
      const p: Running = {
        out: () => out + err,
        err: () => err,
        stdout: () => out,
        ended: () => ended,
        closed,
        async stop() {
          // Ended: every process that held its output is gone too.
          if (ended) return
          signal('SIGTERM')
          const kill = setTimeout(() => signal('SIGKILL'), 15_000)
          await closed
          clearTimeout(kill)
          signal('SIGKILL')
        },
      }
      processes.push(p)
      return p
    }
    /** Runs a README line to its end. */
    const run = async (line: string): Promise<Finished> => {
      const p = spawnLine(line)
      let timer: NodeJS.Timeout | undefined
      const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), COMMAND_MS)))
      const code = await Promise.race([p.closed, timedOut])
      clearTimeout(timer)
      if (code === 'timeout') {
        await p.stop()
        expect.fail(`"${line}" did not end within ${COMMAND_MS} ms; it wrote:\n${p.out()}`)
      }
      return { code, out: p.stdout(), err: p.err() }
    }
    /** `run`, expecting exit code 0. */
    const ok = async (line: string): Promise<Finished> => {
      const r = await run(line)
      expect(r.code, `${line}\n${r.out}${r.err}`).toBe(0)
      return r
    }
    /** Starts a README line that runs until stopped (in a terminal of its own, for the user). */
    const start = (line: string, env: Record<string, string> = {}): Running => spawnLine(line, env)
    /** Waits until `p` wrote a line matching `pattern`; fails with its output when it ends first or after 120 s. */
    const waitForLine = async (p: Running, pattern: RegExp, what: string): Promise<string> => {
      const find = (): string | undefined => p.out().split('\n').find((l) => pattern.test(l))
      await until(() => find() !== undefined || p.ended(), 120_000).catch(() => undefined)
      const line = find()
      if (line === undefined) expect.fail(`${what}: no line matching ${pattern}; it wrote:\n${p.out()}`)
      return line
    }
    const sha12 = (dir: string, file: string): string =>
      (JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as { files: { path: string; sha256: string }[] }).files.find((f) => f.path === file)!.sha256.slice(0, 12)
    const builtAt = (out: string, where: string, keyId: string): string => {
      const m = new RegExp(`^bundles in ${esc(where)}, signed with key ${keyId}; built (\\S+)$`, 'm').exec(out)
      if (m === null) expect.fail(`no summary line for ${where}:\n${out}`)
      return m[1]!
    }
    const row = (device: string, files: number, sha: string): RegExp => new RegExp(`^${device} +\\d+\\.\\d KB +\\d+\\.\\d KB +${sha} +${files}$`, 'm')

    try {
      // The signing key pair.
      const keys = await ok(readme(/^npx outpost keys generate(\s|$)/))
      const keyId = /^key ([0-9a-f]{16})$/m.exec(keys.out)?.[1]
      expect(keyId, keys.out).toBeDefined()
      expect(keys.out).toContain('private: .outpost/keys/signing-key.pem (mode 0600')

      // Every device, signed: the summary table.
      const build1 = await ok(readme(/^npx outpost build --key \.outpost\/keys\/signing-key\.pem(\s|$)/))
      const bundles = path.join(project, 'dist', 'bundles')
      expect(build1.out).toMatch(/^device +size +gzip +sha256 +files$/m)
      expect(build1.out).toMatch(row('display', 3, sha12(path.join(bundles, 'display'), 'display.code.cjs')))
      expect(build1.out).toMatch(row('thermo', 4, sha12(path.join(bundles, 'thermo'), 'thermo.code.cjs')))
      const firstBuild = builtAt(build1.out, 'dist/bundles', keyId!)

      // Flashed onto a folder, trusting the public key.
      const flash = await ok(readme(/^mkdir -p \/tmp\/device && npx outpost flash dist\/bundles\/thermo --to \/tmp\/device --key \.outpost\/keys\/signing-key\.pub\.pem(\s|$)/))
      expect(flash.out).toContain(`verified thermo ${version} (built ${firstBuild}): signed by key ${keyId}`)
      expect(flash.out).toMatch(/^flashed into slot a, now active; no previous slot \(first flash\)$/m)

      // The gateway in its own terminal: development defaults, MQTT on the given port, HTTP on its default (here moved).
      const gatewayLine = readme(/^npx outpost gateway --port 1884(\s|$)/)
      expect(gatewayLine).not.toContain('--config')
      const gateway = start(gatewayLine, { OUTPOST_HTTP_PORT: String(httpPort) })
      const ready = JSON.parse(await waitForLine(gateway, /"msg":"gateway ready"/, 'the gateway')) as { url: string; http: string; auth: boolean }
      expect(ready).toMatchObject({ url: `mqtt://127.0.0.1:${mqttPort}`, http: `http://127.0.0.1:${httpPort}`, auth: false })

      // The device, in its own terminal: the launcher starts slot a, which reports ready and is kept.
      const launcher = start(readme(/^OUTPOST_MQTT_URL=mqtt:\/\/127\.0\.0\.1:1884 OUTPOST_DEVICE_ID=thermo-1 node \/tmp\/device\/launcher\.mjs(\s|$)/))
      // Its ready line (the device's, passed through) and the launcher's verdict, in whichever order they come.
      await waitForLine(launcher, /"device":"thermo-1".*"msg":"ready"/, 'the device')
      await waitForLine(launcher, /slot a is ready: kept \(no rollback from now on\)/, 'the launcher')
      expect(launcher.out()).toContain(`started slot a: thermo ${version}, built ${firstBuild} (new: start 1 of 3`)
      // The V8 code cache of slot a's bundle, made after ready, in the slot's compile-cache folder.
      await until(() => existsSync(path.join(deviceDir, 'compile-cache')) && readdirSync(path.join(deviceDir, 'compile-cache')).some((d) => d.startsWith('a-') && readdirSync(path.join(deviceDir, 'compile-cache', d)).some((f) => /^outpost-thermo-[0-9a-f]{16}-.*\.v8$/.test(f))), 10_000)

      const status1 = await ok(readme(/^npx outpost flash status --to \/tmp\/device(\s|$)/))
      expect(status1.out).toContain(`  active:   slot a: thermo ${version}, built ${firstBuild}; kept (it reported ready since the switch)\n`)
      expect(status1.out).toContain('  previous: none (nothing to roll back to)\n')
      expect(status1.out).toMatch(new RegExp(`^  last: +success at \\S+: slot a \\(thermo ${v}, built ${esc(firstBuild)}\\) reported ready$`, 'm'))
      expect(status1.out).toContain(`  keys:     ${keyId}\n`)

      // A new build, over the air through the gateway: kept in slot b.
      const build2 = await ok(readme(/^npx outpost build thermo --key \.outpost\/keys\/signing-key\.pem(\s|$)/))
      expect(build2.out).toMatch(row('thermo', 4, sha12(path.join(bundles, 'thermo'), 'thermo.code.cjs')))
      expect(build2.out).not.toMatch(/^display /m)
      const secondBuild = builtAt(build2.out, 'dist/bundles', keyId!)
      const ota = await ok(readme(/^npx outpost flash dist\/bundles\/thermo --device thermo-1 --gateway http:\/\/127\.0\.0\.1:8080(\s|$)/))
      expect(ota.err).toBe('')
      expect(ota.out).toContain(`✔ checked thermo ${version} (built ${secondBuild}): 4 files,`)
      expect(ota.out).toContain('✔ verified by the device and installed into slot b; it restarts into it')
      expect(ota.out).toContain('✔ slot b reported ready and is kept')
      expect(ota.out.trim().split('\n').at(-1)).toMatch(new RegExp(`^flashed thermo ${v} over the air to thermo-1: it runs from slot b, slot a kept for rollback \\((\\d+) chunks sent, 0 already there; .*\\)$`))

      // A bad change, built elsewhere, then undone.
      const breakLine = readme(/^echo '[^']*' >> devices\/thermo\/[\w-]+\.ts(\s|$)/)
      const edited = /^echo '([^']*)' >> (\S+)/.exec(breakLine)!
      const source = path.join(project, edited[2]!)
      const original = readFileSync(source)
      await ok(breakLine)
      expect(readFileSync(source, 'utf8')).toBe(`${original.toString('utf8')}${edited[1]}\n`)
      const bad = await ok(readme(/^npx outpost build thermo --key \.outpost\/keys\/signing-key\.pem --out \/tmp\/bad(\s|$)/))
      const badBuild = builtAt(bad.out, badDir, keyId!)
      expect(bad.out).toMatch(row('thermo', 4, sha12(path.join(badDir, 'thermo'), 'thermo.code.cjs')))
      const undo = readme(/^git checkout (\S+)(\s|$)/)
      expect(undo.split(/\s+/)[2]).toBe(edited[2])
      writeFileSync(source, original)

      // Over the air again: the device installs it, it fails at each start, the launcher goes back to slot b.
      const rolled = await run(readme(/^npx outpost flash \/tmp\/bad\/thermo --device thermo-1 --gateway http:\/\/127\.0\.0\.1:8080(\s|$)/))
      expect(rolled.code, rolled.out + rolled.err).toBe(1)
      expect(rolled.out).toContain(`✔ checked thermo ${version} (built ${badBuild}): 4 files,`)
      expect(rolled.out).toContain('✔ verified by the device and installed into slot a; it restarts into it')
      const reason = `slot a exited with code 1: Error: broken on purpose before it was ready, 3 starts in a row`
      const err = rolled.err.trim().split('\n')
      expect(err).toHaveLength(2)
      expect(err[0]).toBe('✖ wait for the new bundle to report ready [FAILED: rolled back]')
      expect(err[1]).toMatch(new RegExp(`^outpost: rolled back: thermo ${v} in slot a was not kept \\(${reason}\\); device thermo-1 runs slot b \\(thermo ${v}, built ${esc(secondBuild)}\\) again$`))
      // The device's terminal shows the bundle's error, and the rollback.
      expect(launcher.out()).toContain(`Error: ${/"([^"]*)"/.exec(edited[1]!)![1]}`)
      expect(launcher.out()).toMatch(new RegExp(`rolled back from slot a to slot b: ${reason}`))

      const status2 = await ok(readme(/^npx outpost flash status --to \/tmp\/device(\s|$)/))
      expect(status2.out).toContain(`  active:   slot b: thermo ${version}, built ${secondBuild}; kept (it reported ready since the switch)\n`)
      expect(status2.out).toContain('  previous: none (nothing to roll back to)\n')
      expect(status2.out).toMatch(new RegExp(`^  last: +rolled back at \\S+ from slot a \\(built ${esc(badBuild)}\\) to slot b: ${reason}$`, 'm'))

      // Slot b still serves the thermo's command, through the gateway.
      const curl = await ok(readme(/^curl -s -X POST http:\/\/127\.0\.0\.1:8080\/devices\/thermo-1\/commands\/thermo\/1\/read -d '\{"unit":"C"\}'(\s|$)/))
      expect(JSON.parse(curl.out)).toMatchObject({ result: { unit: 'C', value: expect.any(Number) } })

      // Every command of the section was run.
      expect(commands.slice(next)).toEqual([])
    } finally {
      for (const p of processes.reverse()) await p.stop()
      rmSync(tmp, { recursive: true, force: true })
    }
  }, 600_000)
})
