// A device logging with pino while its stdout is a pipe nobody reads for a while (a supervisor
// that is busy or hung, a `| less` left paused), bundled (build/stubs/sonic-boom.cjs in place of
// sonic-boom) and unbundled (the real pino and sonic-boom, as a device runs from compiled code).
// Built with esbuild (bundled: with the stand-ins' plugin, as device bundles are built) and run as
// a process whose stdout is a real FIFO that fills: the device must go on running (its timers,
// its commands, its SIGTERM handler).
// - The runtime's logger (runtime/logger.ts: synchronous, with runtime/log-writer.ts, to the pipe
//   opened again without blocking, also when the pipe was full before the process started and
//   descriptor 1 blocks): sonic-boom itself waits on a full pipe for ever, and the whole device
//   stopped; the line writer waits a second, then drops lines and counts them, and once the pipe
//   is read again says how many, with no line torn.
// - Asking for an asynchronous destination (sync: false) the bundle does not have: told at start.
import { execFileSync, spawn } from 'node:child_process'
import { chmodSync, closeSync, existsSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { build, type Plugin } from 'esbuild'
import { describe, expect, it } from 'vitest'
import { deviceStubs } from '../../build/device-stubs.js'
import { PROJECT_ROOT } from '../../build/project-root.js'
import { tempDirs } from '../build/build-helpers.js'
import { unreadFifo } from '../helpers/fifo.js'
import { fillDisk, mountSmallDisk } from '../helpers/small-disk.js'
import { runOnStoppedTerminal, runOnTerminal } from '../helpers/stopped-terminal.js'

const temp = tempDirs('bundle-logging')

/** `runtime`: the runtime's own logger (runtime/logger.ts); else pino with that destination. */
const program = (destination: string): string => [
  "import { pino } from 'pino'",
  "import { createLogger } from './runtime/logger.js'",
  "import { appendFileSync } from 'node:fs'",
  destination === 'runtime' ? "const log = createLogger({ name: 'chatty' })" : `const log = pino(pino.destination(${destination}))`,
  // At once, as a device logs while it starts, before the event loop's first turn.
  "log.info('started')",
  'let beats = 0',
  "setInterval(() => { for (let i = 0; i < 50; i++) log.info({ pad: 'x'.repeat(200) }, 'chatty') }, 5)",
  // One byte a beat: the file's size counts them (a reader never sees it half written).
  "setInterval(() => appendFileSync(process.env.BEAT_FILE, '.'), 50)",
  // As a device stops: a last line, then exit.
  "process.on('SIGTERM', () => { log.info('stopping'); process.exit(0) })",
].join('\n')

interface Outcome {
  /** Heartbeats counted once the pipe had long been full, and a second later. */
  beats: [number, number]
  /** The process ended by itself, and what it wrote to stderr. */
  exited: { code: number | null } | undefined
  stderr: string
  /** What the FIFO held once read after the heartbeats were counted (the process still running), complete lines only. */
  lines: string[]
}

/** The program bundled (with `plugins`) as a device bundle is, into `dir`. */
async function bundleProgram(dir: string, plugins: Plugin[], destination: string): Promise<string> {
  const out = path.join(dir, 'program.cjs')
  const result = await build({
    absWorkingDir: PROJECT_ROOT,
    stdin: { contents: program(destination), resolveDir: PROJECT_ROOT, loader: 'ts' },
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    write: false,
    plugins,
    logLevel: 'silent',
  })
  writeFileSync(out, result.outputFiles[0]!.contents)
  return out
}

/**
 * Bundles the program (with `plugins`), runs it with stdout to a FIFO that is never read (full
 * before it starts, with `fullAtStart`), watches its heartbeat.
 */
async function runWithFullPipe(dir: string, plugins: Plugin[], destination: string, fullAtStart = false): Promise<Outcome> {
  const out = await bundleProgram(dir, plugins, destination)
  const pipe = unreadFifo(dir)
  if (fullAtStart) pipe.fill()
  const beatFile = path.join(dir, 'beats')
  const child = spawn(process.execPath, [out], { stdio: ['ignore', pipe.writeEnd, 'pipe'], env: { ...process.env, BEAT_FILE: beatFile } })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
  let exited: { code: number | null } | undefined
  const ended = new Promise<void>((resolve) => child.once('exit', (code) => ((exited = { code }), resolve())))
  const beats = (): number => (existsSync(beatFile) ? statSync(beatFile).size : 0)
  try {
    // 64 KiB of pipe fill in well under a second at this rate.
    await new Promise((r) => setTimeout(r, 2_000))
    const first = beats()
    await new Promise((r) => setTimeout(r, 1_000))
    const counted: [number, number] = [first, beats()]
    // Read the pipe now for a while, as a reader that came back: what arrives.
    const text = await pipe.readFor(1_500)
    return { beats: counted, exited, stderr, lines: text.split('\n').slice(0, -1) }
  } finally {
    if (exited === undefined) child.kill('SIGKILL')
    await ended
    pipe.close()
  }
}

describe('a device whose stdout pipe is full', () => {
  // These runs mostly wait (for a pipe to fill, for heartbeats): four at a time, not one after the other.
  it.concurrent.for<[string, string, boolean]>([
    ['bundled', 'fills as it runs', false],
    ['bundled', 'is full before it starts (descriptor 1 as its parent gave it: blocking)', true],
    // With the real pino and sonic-boom, as a device runs from compiled code (an install, `node dist/devices/...`).
    ['unbundled', 'fills as it runs', false],
    ['unbundled', 'is full before it starts (descriptor 1 as its parent gave it: blocking)', true],
  ])("%s, logging with the runtime's logger, a pipe that %s: it keeps running; dropped lines are counted once the pipe is read again, and no line is torn", { timeout: 30_000 }, async ([how, , fullAtStart], { expect }) => {
    const bundled = await runWithFullPipe(temp(), how === 'bundled' ? [deviceStubs(PROJECT_ROOT)] : [], 'runtime', fullAtStart)
    expect(bundled.exited).toBeUndefined()
    expect(bundled.beats[1], `frozen: heartbeats ${bundled.beats.join(' -> ')}`).toBeGreaterThan(bundled.beats[0])
    // Every line that arrived is one whole JSON line; the lines dropped are counted.
    // (The filler of a pipe full at start has no line end: the first line follows it.)
    const parsed = bundled.lines.map((l) => l.replace(/^\.+/, '')).filter((l) => l !== '').map((l) => JSON.parse(l) as { msg: string; device?: string })
    expect(parsed.filter((l) => l.msg === 'chatty').length).toBeGreaterThan(100)
    const notes = parsed.filter((l) => /log lines? dropped: the output was not read/.test(l.msg))
    expect(notes.length).toBeGreaterThanOrEqual(1)
    expect(Number(/^(\d+)/.exec(notes[0]!.msg)![1])).toBeGreaterThan(0)
    // Whose lines went missing: the note carries the device of the line after it.
    expect(notes.map((n) => n.device)).toEqual(notes.map(() => 'chatty'))
  })

  it.concurrent.for<[string, string, boolean]>([
    ['bundled', 'stops reading', false],
    ['bundled', 'never reads, full before the program starts (descriptor 1 blocking)', true],
    ['unbundled', 'stops reading', false],
    ['unbundled', 'never reads, full before the program starts (descriptor 1 blocking)', true],
  ])("%s, logging with the runtime's logger into a socket its Node parent made (as the launcher's), which the parent %s: it keeps running", { timeout: 30_000 }, async ([how, , fullAtStart], { expect }) => {
    const dir = temp()
    const out = await bundleProgram(dir, how === 'bundled' ? [deviceStubs(PROJECT_ROOT)] : [], 'runtime')
    const beatFile = path.join(dir, 'beats')
    // stdio 'pipe' from Node is a socket pair; paused, the parent reads no more once its buffer is full.
    const [cmd, args] = fullAtStart ? ['bash', ['-c', `timeout 1 cat /dev/zero; exec ${JSON.stringify(process.execPath)} ${JSON.stringify(out)}`]] : [process.execPath, [out]]
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BEAT_FILE: beatFile } })
    child.stdout!.pause()
    let exited: number | null | undefined
    const ended = new Promise<void>((resolve) => child.once('exit', (code) => ((exited = code), resolve())))
    const beats = (): number => (existsSync(beatFile) ? statSync(beatFile).size : 0)
    try {
      await new Promise((r) => setTimeout(r, 2_500))
      const first = beats()
      await new Promise((r) => setTimeout(r, 1_000))
      expect(exited).toBeUndefined()
      expect(beats(), `frozen at ${first} heartbeats`).toBeGreaterThan(first)
    } finally {
      child.kill('SIGKILL')
      await ended
    }
  })

  it.each(['bundled', 'unbundled'])("%s, logging with the runtime's logger to a terminal that stops taking output (Ctrl-S, a serial line's XOFF): it keeps running, stops on SIGTERM, counts the lines dropped, tears none", async (how) => {
    const dir = temp()
    const out = await bundleProgram(dir, how === 'bundled' ? [deviceStubs(PROJECT_ROOT)] : [], 'runtime')
    const run = await runOnStoppedTerminal([process.execPath, out], { BEAT_FILE: path.join(dir, 'beats') })
    // Before: a terminal's writes block, and the whole program stopped with the terminal, its
    // SIGTERM handler included (it ran only once the terminal went on).
    expect(run.beatsWhileStopped[1], `frozen: heartbeats ${run.beatsWhileStopped.join(' -> ')}`).toBeGreaterThan(run.beatsWhileStopped[0])
    expect(run.exitCode, `stderr: ${run.stderr}`).toBe(0)
    expect(run.exitMs).toBeLessThan(5_000)
    // A terminal gets readable lines, each whole: `HH:MM:SS.mmm [chatty   ] …`.
    expect(run.lines.length).toBeGreaterThan(100)
    for (const line of run.lines) expect(line).toMatch(/^\d\d:\d\d:\d\d\.\d{3} \[chatty\s*\] /)
    const notes = run.lines.filter((l) => /\] WARN \d+ log lines? dropped: the output was not read, or too slowly$/.test(l))
    expect(notes.length).toBeGreaterThanOrEqual(1)
  }, 60_000)

  it("bundled, logging with the runtime's logger into a pipe read slowly (4 KiB every 100 ms, as a slow console): it keeps its pace, drops and counts lines, tears none", async () => {
    const dir = temp()
    const out = await bundleProgram(dir, [deviceStubs(PROJECT_ROOT)], 'runtime')
    const pipe = unreadFifo(dir)
    const beatFile = path.join(dir, 'beats')
    const child = spawn(process.execPath, [out], { stdio: ['ignore', pipe.writeEnd, 'ignore'], env: { ...process.env, BEAT_FILE: beatFile } })
    const ended = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    const beats = (): number => (existsSync(beatFile) ? statSync(beatFile).size : 0)
    try {
      // Slowly from the start; the heartbeats of three seconds once the pipe has long been full.
      let text = await pipe.readFor(2_000, 4_096)
      const first = beats()
      text += await pipe.readFor(3_000, 4_096)
      const counted = beats() - first
      // A beat every 50 ms: 60 in three seconds. Before: each line waited on the reader for up
      // to a second, every line found it full, and the program ran at the reader's pace.
      expect(counted, `${counted} heartbeats in 3 s`).toBeGreaterThanOrEqual(30)
      text += await pipe.readFor(1_500)
      const lines = text.split('\n').slice(0, -1).map((l) => JSON.parse(l) as { msg: string })
      expect(lines.filter((l) => /^\d+ log lines? dropped: the output was not read, or too slowly$/.test(l.msg)).length).toBeGreaterThanOrEqual(1)
    } finally {
      child.kill('SIGKILL')
      await ended
      pipe.close()
    }
  }, 30_000)

  it("logging with the runtime's logger when descriptor 1 is a pipe's read end: nothing is written into that pipe", async () => {
    const dir = temp()
    const out = await bundleProgram(dir, [deviceStubs(PROJECT_ROOT)], 'runtime')
    const injected = path.join(dir, 'injected')
    // The program's descriptor 1 is the end `cat` reads from: a write there would reach cat's input.
    const script = `sleep 3 | { ${JSON.stringify(process.execPath)} ${JSON.stringify(out)} 1<&0 0</dev/null & P=$!; cat > ${JSON.stringify(injected)} & sleep 2; kill $P; wait $P; true; }`
    execFileSync('bash', ['-c', script], { env: { ...process.env, BEAT_FILE: path.join(dir, 'beats') }, timeout: 20_000 })
    expect(statSync(injected).size).toBe(0)
    expect(statSync(path.join(dir, 'beats')).size).toBeGreaterThan(0)
  }, 30_000)

  // A device started as another user (su, runuser, systemd's User=) on a console that user may
  // not open (EACCES): the terminal cannot be opened again without blocking, so its writes still
  // block should it stop taking output; the process says so at start, with what to do.
  it("bundled, logging with the runtime's logger to a terminal its user may not open again: the first line warns that its output may block, then it runs as usual (as root: run as nobody)", async () => {
    const dir = temp()
    const out = await bundleProgram(dir, [deviceStubs(PROJECT_ROOT)], 'runtime')
    const root = process.getuid?.() === 0
    if (root) {
      chmodSync(dir, 0o777)
      chmodSync(out, 0o644)
    }
    const command = [...(root ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : []), process.execPath, out]
    // The terminal: a pseudo-terminal only its owner may open (0600), read for 2 s, then SIGTERM.
    const run = await runOnTerminal(command, { BEAT_FILE: path.join(dir, 'beats') }, { seconds: 2, mode: 0o600 })
    const lines = run.lines
    expect(run.exitCode, run.stderr).toBe(0)
    const warning = /^\d\d:\d\d:\d\d\.\d{3} \[chatty\s*\] WARN output goes to a terminal this process may not open again \(EACCES\): should it stop taking output .*, this process stops with it; let its user open the terminal/
    if (root) expect(lines[0]).toMatch(warning)
    // Without root the test cannot give the program a terminal it may not open: it opens its own, and says nothing.
    else expect(lines.filter((l) => warning.test(l))).toEqual([])
    expect(lines.filter((l) => /\] chatty  pad=/.test(l)).length).toBeGreaterThan(100)
    expect(lines.at(-1)).toMatch(/\] stopping$/)
  }, 30_000)

  it('asking for an asynchronous destination: the real module keeps running; the bundle says at start it has none, never freezes', async () => {
    // The real module: the program keeps running (its lines wait in memory).
    const real = await runWithFullPipe(temp(), [], '{ sync: false }')
    expect(real.exited).toBeUndefined()
    expect(real.beats[1]).toBeGreaterThan(real.beats[0])

    const bundled = await runWithFullPipe(temp(), [deviceStubs(PROJECT_ROOT)], '{ sync: false }')
    expect(bundled.exited?.code).not.toBe(0)
    expect(bundled.exited).toBeDefined()
    expect(bundled.stderr).toMatch(/asynchronous mode \(sync: false\) was left out of this device bundle/)
  }, 30_000)
})

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/**
 * Runs the program (bundled with `plugins`) with its stdout appended to `logFile`; `whileRunning`
 * gets its heartbeat count. Stops it with SIGTERM: its exit code and how long that took.
 */
async function runLoggingTo(dir: string, plugins: Plugin[], destination: string, logFile: string, whileRunning: (beats: () => number) => Promise<void>): Promise<{ code: number | null; stopMs: number; stderr: string }> {
  const out = await bundleProgram(dir, plugins, destination)
  const beatFile = path.join(dir, 'beats')
  const fd = openSync(logFile, 'a')
  const child = spawn(process.execPath, [out], { stdio: ['ignore', fd, 'pipe'], env: { ...process.env, BEAT_FILE: beatFile, LOG_FILE: logFile } })
  closeSync(fd)
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
  let code: number | null | undefined
  const ended = new Promise<void>((resolve) => child.once('exit', (c) => ((code = c), resolve())))
  try {
    await whileRunning(() => (existsSync(beatFile) ? statSync(beatFile).size : 0))
    expect(code, `ended early: ${stderr}`).toBeUndefined()
    const t0 = Date.now()
    child.kill('SIGTERM')
    await Promise.race([ended, sleep(10_000)])
    return { code: code ?? null, stopMs: Date.now() - t0, stderr }
  } finally {
    if (code === undefined) child.kill('SIGKILL')
    await ended
  }
}

describe('a device whose log file is on a disk that fills', () => {
  // Before: the line writer took ENOSPC as a failure. The line the disk cut short stayed torn, and
  // the first line written once the disk had room again was glued to it (one line of broken
  // JSON); the lines lost in between were not counted. pino.destination(file) in a bundle threw
  // the ENOSPC out of the log call (its 'error' event), and the program ended.
  it.each([
    ['bundled', "the runtime's logger", 'runtime'],
    ['unbundled', "the runtime's logger", 'runtime'],
    ['bundled', 'pino.destination(file)', 'process.env.LOG_FILE'],
  ])('%s, logging with %s: it keeps running; once the disk has room again the line cut short is finished, a note counts the lines dropped, no line is torn (where a small disk can be mounted)', async (how, _, destination) => {
    const dir = temp()
    const plugins = how === 'bundled' ? [deviceStubs(PROJECT_ROOT)] : []
    // Room for what the program writes in 5 s (~3 MB/s), until the disk is filled on purpose.
    const disk = mountSmallDisk(path.join(dir, 'disk'), '24m')
    if (disk === undefined) {
      // No disk of its own to fill here: a disk that is always full (/dev/full answers every write ENOSPC).
      const stopped = await runLoggingTo(dir, plugins, destination === 'runtime' ? destination : "'/dev/full'", '/dev/full', async (beats) => {
        await sleep(1_500)
        const first = beats()
        await sleep(1_000)
        expect(beats(), `frozen at ${first} heartbeats`).toBeGreaterThan(first)
      })
      expect(stopped.code, stopped.stderr).toBe(0)
      return
    }
    try {
      const logFile = path.join(disk.dir, 'device.log')
      const stopped = await runLoggingTo(dir, plugins, destination, logFile, async (beats) => {
        await sleep(700)
        // To the last byte: the disk takes part of the line being written, then refuses the rest.
        const filler = fillDisk(path.join(disk.dir, 'filler'))
        await sleep(1_000)
        // (The log's last block took what fitted in it.)
        const full = statSync(logFile).size
        const first = beats()
        await sleep(1_000)
        expect(beats(), `frozen at ${first} heartbeats`).toBeGreaterThan(first)
        expect(statSync(logFile).size).toBe(full)
        rmSync(filler)
        await sleep(1_500)
      })
      expect(stopped.code, stopped.stderr).toBe(0)
      expect(stopped.stopMs).toBeLessThan(5_000)
      const text = readFileSync(logFile, "utf8")
      expect(text.endsWith('\n')).toBe(true)
      const lines = text.slice(0, -1).split('\n').map((l, i) => {
        try {
          return JSON.parse(l) as { msg: string }
        } catch {
          throw new Error(`line ${i + 1} is not whole JSON: ${l.slice(0, 120)}…${l.slice(-60)}`)
        }
      })
      const notes = lines.flatMap((l, i) => (/^\d+ log lines? dropped: the output's disk was full$/.test(l.msg) ? [i] : []))
      expect(notes.length, 'no note of the lines dropped').toBeGreaterThanOrEqual(1)
      expect(Number(/^(\d+)/.exec(lines[notes[0]!]!.msg)![1])).toBeGreaterThan(10)
      // Lines before the disk filled, and after it had room again.
      expect(lines.slice(0, notes[0]).filter((l) => l.msg === 'chatty').length).toBeGreaterThan(10)
      expect(lines.slice(notes[0]! + 1).filter((l) => l.msg === 'chatty').length).toBeGreaterThan(10)
      expect(lines.at(-1)?.msg).toBe('stopping')
    } finally {
      disk.dispose()
    }
  }, 60_000)
})
