// `outpost forward status|dead|redrive|purge` as a careless user types it, run as a user runs it
// (`node bin/outpost.js forward …`, from a folder of its own): typos, missing values, bad numbers,
// a target that does not exist, no config, a broken one, one without a forward section, a
// forward.db that is garbage or a folder. Every wrong call is one line on stderr and a non-zero
// exit code, never a stack trace; every right one does what it says, and `--json` parses.
// Defects found here: a misspelt --target showed "nothing waiting" and redrove or purged nothing
// with exit code 0; a seq that is no dead letter was "0 dead letters deleted", exit 0; --limit on
// status, redrive and purge was taken and ignored; `status extra` said "extra" was no seq;
// dead letters were printed raw (a device's escape codes reached the operator's terminal); and a
// redrive beside a running gateway left its backlog negative once the redriven events went out;
// `purge` without seqs deleted every dead letter (it now takes seqs or an explicit --all).
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { jetstreamManager } from '@nats-io/jetstream'
import { connect as natsConnect } from '@nats-io/transport-node'
import { afterAll, describe, expect, it } from 'vitest'
import { openForwardQueue, type NewForwardMessage } from '../../gateway/forward/forward-queue.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { CLEAN_GATEWAY_ENV } from '../helpers/gateway-cli.js'
import { inTurns } from '../helpers/processes.js'
import { eventSlots, rawFrame } from '../helpers/raw-wire.js'
import { startGatewayProcess } from './gateway-attack-process.js'

const OUTPOST = path.resolve('bin/outpost.js')
const run = promisify(execFile)

interface Outcome {
  code: number | null
  out: string
  err: string
}

/** `node bin/outpost.js …` from `cwd`, with a clean environment plus `env`. */
async function outpost(args: string[], cwd: string, env: Record<string, string> = {}): Promise<Outcome> {
  try {
    const r = await run(process.execPath, [OUTPOST, ...args], { cwd, env: { ...process.env, ...CLEAN_GATEWAY_ENV, ...env }, timeout: 30_000 })
    return { code: 0, out: r.stdout, err: r.stderr }
  } catch (e) {
    const x = e as { code: number | null; stdout: string; stderr: string }
    return { code: x.code, out: x.stdout, err: x.stderr }
  }
}

/** A wrong call: exit `code`, exactly one line on stderr, `outpost: <CODE>: …`, no stack trace anywhere. */
function expectRefused(r: Outcome, code: number, errorCode: string, text: string | RegExp, what: string): void {
  expect(r.code, `${what}: ${r.err}`).toBe(code)
  const lines = r.err.trim().split('\n')
  expect(lines, what).toHaveLength(1)
  expect(lines[0], what).toMatch(new RegExp(`^outpost: ${errorCode}: `))
  if (typeof text === 'string') expect(lines[0], what).toContain(text)
  else expect(lines[0], what).toMatch(text)
  expect(r.out + r.err, what).not.toMatch(/\n\s+at .+:\d+:\d+/)
}

const root = mkdtempSync(path.join(tmpdir(), 'outpost-fwd-cli-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))

/** A folder with `gateway.yaml` (`yaml` as given) and its data folder `data`. */
function folder(name: string, yaml: string): { dir: string; config: string; dataDir: string } {
  const dir = path.join(root, name)
  mkdirSync(path.join(dir, 'data'), { recursive: true })
  const config = path.join(dir, 'gateway.yaml')
  writeFileSync(config, yaml)
  return { dir, config, dataDir: path.join(dir, 'data') }
}

const FORWARD_YAML = `dataDir: data
mqtt: { port: 0 }
forward:
  targets:
    cloud: { type: nats, servers: nats://127.0.0.1:4222, stream: { name: FWD_CLI_UNUSED } }
    warehouse: { type: rabbitmq, url: amqp://guest:guest@127.0.0.1:5672, exchange: { name: fwd.cli.unused } }
  routes:
    - { to: [cloud, warehouse] }
`

/** A row of the forward queue, as the gateway writes it for an event. */
const row = (target: string, n: number, over: Partial<NewForwardMessage> = {}): NewForwardMessage => ({
  target,
  id: `01JEVENT${String(n).padStart(18, '0')}`,
  device: 'meter-1',
  subject: `outpost.evt.meter-1.meter.1.reading`,
  headers: { 'Outpost-Id': `id-${n}` },
  contentType: 'application/json',
  body: Buffer.from(JSON.stringify({ n })),
  receivedAt: Date.now() - 60_000,
  ...over,
})

/**
 * Seeds forward.db as a gateway leaves it: `queued` rows per target waiting, and dead letters
 * (each a row moved to the dead table with its reason). Returns the dead letters' seqs.
 */
function seed(dataDir: string, queued: NewForwardMessage[], dead: { row: NewForwardMessage; reason: string }[]): number[] {
  const q = openForwardQueue({ path: path.join(dataDir, 'forward.db'), limits: {} })
  try {
    q.append(queued.map((r) => [r]))
    const seqs: number[] = []
    for (const d of dead) {
      q.append([[d.row]])
      const last = q.next(d.row.target, 0, 10_000).at(-1)!
      q.deadLetter(d.row.target, last.seq, d.reason, Date.now())
      seqs.push(last.seq)
    }
    return seqs
  } finally {
    q.close()
  }
}

describe('outpost forward: typos and misuse', () => {
  it('wrong commands, options and values: one line on stderr, exit 2, no stack trace', async () => {
    const f = folder('misuse', FORWARD_YAML)
    seed(f.dataDir, [row('cloud', 1)], [{ row: row('cloud', 2), reason: 'refused' }])
    const c = ['--config', f.config]
    const cases: [string[], string | RegExp][] = [
      [['forward', ...c], 'which command?'],
      [['forward', 'stauts', ...c], 'unknown command "stauts" (did you mean status?); expected status, dead, redrive, purge'],
      [['forward', 'list', ...c], 'unknown command "list"'],
      [['forward', 'status', '--targte', 'cloud', ...c], 'unknown option --targte'],
      [['forward', 'status', '--tagret=cloud', ...c], 'unknown option --tagret'],
      [['forward', 'status', ...c, '--target'], '--target needs a value'],
      [['forward', 'status', '--target', '--json', ...c], '--target needs a value'],
      [['forward', 'dead', ...c, '--limit'], '--limit needs a value'],
      [['forward', 'dead', '--limit', '-1', ...c], '--limit "-1" is not accepted'],
      [['forward', 'dead', '--limit', 'abc', ...c], '--limit "abc" is not accepted'],
      [['forward', 'dead', '--limit', '0', ...c], '--limit "0" is not accepted'],
      [['forward', 'dead', '--limit', '1.5', ...c], '--limit "1.5" is not accepted'],
      [['forward', 'dead', '--limit=', ...c], '--limit "" is not accepted'],
      // Was taken and ignored: `purge --limit 5` deleted every dead letter.
      [['forward', 'purge', '--limit', '5', ...c], '--limit is an option of outpost forward dead only, not of purge'],
      [['forward', 'status', '--limit', '5', ...c], '--limit is an option of outpost forward dead only'],
      // Was "nothing waiting" / "0 dead letters deleted" with exit code 0.
      [['forward', 'status', '--target', 'clod', ...c], '--target clod: no such target; expected one of cloud, warehouse'],
      [['forward', 'purge', '--target', 'Cloud', ...c], '--target Cloud: no such target'],
      [['forward', 'redrive', '--target', '', ...c], '--target "" is not a target name'],
      [['forward', 'dead', '--target', '../cloud', ...c], '--target "../cloud" is not a target name'],
      [['forward', 'status', 'extra', ...c], 'outpost forward status takes no arguments (got "extra")'],
      [['forward', 'dead', '3', ...c], 'outpost forward dead takes no arguments (got "3")'],
      [['forward', 'redrive', 'abc', ...c], '"abc" is not a dead letter\'s seq'],
      [['forward', 'purge', '-1', ...c], /unknown option -1|"-1" is not a dead letter's seq/],
      [['forward', 'purge', '0x10', ...c], '"0x10" is not a dead letter\'s seq'],
      [['forward', 'status', '--json=yes', ...c], '--json takes no value'],
      [['forward', 'status', '--port', '1883', ...c], '--port is not an option of outpost forward'],
      [['forward', 'status', '--role', 'x', ...c], '--role is not an option of outpost forward'],
      // Was every dead letter deleted, exit 0: a purge now names its seqs or says --all.
      [['forward', 'purge', ...c], 'outpost forward purge: give the seqs of the dead letters to delete, or --all for every one; nothing was deleted'],
      [['forward', 'purge', '--target', 'cloud', ...c], 'give the seqs of the dead letters to delete, or --all for every one of target cloud; nothing was deleted'],
      [['forward', 'purge', '--json', ...c], 'or --all for every one'],
      [['forward', 'purge', '--all=yes', ...c], '--all takes no value'],
      [['forward', 'purge', '3', '--all', ...c], 'give seqs or --all, not both'],
      [['forward', 'redrive', '--all', ...c], '--all is an option of outpost forward purge only, not of redrive'],
      [['forward', 'status', '--all', ...c], '--all is an option of outpost forward purge only, not of status'],
      [['devices', 'list', '--all', ...c], '--all is not an option of outpost devices'],
    ]
    // Four at a time: each is a CLI process that refuses before it touches anything.
    const results = await inTurns(cases, 4, ([args]) => outpost(args, f.dir))
    cases.forEach(([args, text], i) => expectRefused(results[i]!, 2, 'BAD_ARGUMENT', text, args.join(' ')))
    // Nothing was changed by any of them.
    const status = await outpost(['forward', 'status', '--json', ...c], f.dir)
    expect(JSON.parse(status.out)).toMatchObject([{ target: 'cloud', waiting: 1, dead: 1 }])
  }, 120_000)

  it('a seq that is no dead letter (or not of --target) is NOT_FOUND and nothing is changed', async () => {
    const f = folder('seqs', FORWARD_YAML)
    const [a, b] = seed(f.dataDir, [], [
      { row: row('cloud', 1), reason: 'too large' },
      { row: row('warehouse', 2), reason: 'too large' },
    ])
    const c = ['--config', f.config]
    expectRefused(await outpost(['forward', 'purge', '999999', ...c], f.dir), 1, 'NOT_FOUND', 'no dead letter 999999 (see outpost forward dead); nothing was changed', 'purge 999999')
    expectRefused(await outpost(['forward', 'redrive', String(a), '999998', ...c], f.dir), 1, 'NOT_FOUND', 'no dead letter 999998', 'redrive a 999998')
    expectRefused(await outpost(['forward', 'purge', String(b), '--target', 'cloud', ...c], f.dir), 1, 'NOT_FOUND', `no dead letter ${b} of target cloud`, 'purge b --target cloud')
    const dead = JSON.parse((await outpost(['forward', 'dead', '--json', ...c], f.dir)).out) as { seq: number }[]
    expect(dead.map((d) => d.seq)).toEqual([a, b])
  }, 60_000)

  it('no config, a missing or broken one, one without a forward section: a clear line each', async () => {
    // No --config, no variables: the development data folder under the current folder, which has none.
    const bare = folder('bare', '')
    expectRefused(await outpost(['forward', 'status'], bare.dir), 1, 'NOT_FOUND', `no forward queue at ${path.join(bare.dir, '.outpost', 'gateway', 'forward.db')}`, 'no config')
    expectRefused(await outpost(['forward', 'status', '--config', path.join(bare.dir, 'nope.yaml')], bare.dir), 2, 'INVALID_CONFIG', 'nope.yaml: cannot read the config file (no such file)', 'missing config')
    const broken = folder('broken', 'dataDir: data\nforward: [targets\n')
    expectRefused(await outpost(['forward', 'status', '--config', broken.config], broken.dir), 2, 'INVALID_CONFIG', 'not valid YAML', 'broken YAML')
    const badSection = folder('bad-section', 'dataDir: data\nforward:\n  targets:\n    cloud: { type: kafka }\n')
    expectRefused(await outpost(['forward', 'status', '--config', badSection.config], badSection.dir), 2, 'INVALID_CONFIG', 'forward.targets.cloud', 'kafka target')
    const json = folder('json-config', '{ "dataDir": "data", "forward": ')
    writeFileSync(path.join(json.dir, 'gateway.json'), '{ "dataDir": "data", "forward": ')
    expectRefused(await outpost(['forward', 'status', '--config', path.join(json.dir, 'gateway.json')], json.dir), 2, 'INVALID_CONFIG', 'gateway.json', 'broken JSON')
    // A config without a forward section, and no gateway ever forwarded there.
    const plain = folder('plain', 'dataDir: data\nmqtt: { port: 0 }\n')
    expectRefused(await outpost(['forward', 'dead', '--config', plain.config], plain.dir), 1, 'NOT_FOUND', `no forward queue at ${path.join(plain.dataDir, 'forward.db')}`, 'no forward section')
    expectRefused(await outpost(['forward', 'status', '--target', 'cloud', '--config', plain.config], plain.dir), 1, 'NOT_FOUND', 'no forward queue', 'no forward section, --target')
    // The same config once a gateway forwarded there (the section removed since): what is left is shown, its targets known.
    seed(plain.dataDir, [row('cloud', 1)], [])
    const left = await outpost(['forward', 'status', '--target', 'cloud', '--config', plain.config], plain.dir)
    expect(left.code, left.err).toBe(0)
    expect(left.out.trim()).toMatch(/^cloud: waiting 1 \(\d+ bytes, oldest \d+ s\), dead 0$/)
    expectRefused(await outpost(['forward', 'status', '--target', 'warehouse', '--config', plain.config], plain.dir), 2, 'BAD_ARGUMENT', '--target warehouse: no such target; expected one of cloud', 'target of no config')
  }, 120_000)

  it('forward.db that is garbage, empty, or a folder: one STORE_* line, exit 1, and the file is left as it was', async () => {
    const garbage = folder('garbage', FORWARD_YAML)
    const junk = randomBytes(8192)
    writeFileSync(path.join(garbage.dataDir, 'forward.db'), junk)
    for (const verb of [['status'], ['dead'], ['redrive'], ['purge', '--all']]) {
      expectRefused(await outpost(['forward', ...verb, '--config', garbage.config], garbage.dir), 1, 'STORE_FAILED', `${path.join(garbage.dataDir, 'forward.db')} is not an SQLite database`, `garbage ${verb.join(' ')}`)
    }
    expect(readFileSync(path.join(garbage.dataDir, 'forward.db')).equals(junk)).toBe(true)
    const empty = folder('empty', FORWARD_YAML)
    writeFileSync(path.join(empty.dataDir, 'forward.db'), '')
    expectRefused(await outpost(['forward', 'status', '--config', empty.config], empty.dir), 1, 'STORE_FAILED', 'is an empty file', 'empty forward.db')
    const dir = folder('dir', FORWARD_YAML)
    mkdirSync(path.join(dir.dataDir, 'forward.db'))
    expectRefused(await outpost(['forward', 'status', '--config', dir.config], dir.dir), 1, 'STORE_FAILED', 'is a directory', 'forward.db a folder')
    // --target is checked against the queue too: the same line, not a stack trace from the check.
    expectRefused(await outpost(['forward', 'status', '--target', 'old', '--config', garbage.config], garbage.dir), 1, 'STORE_FAILED', 'is not an SQLite database', 'garbage with --target')
  }, 120_000)
})

describe('outpost forward: what it is for', () => {
  it('status, dead, redrive and purge do what they say; --json parses; a device\'s escape codes are shown escaped', async () => {
    const f = folder('uses', FORWARD_YAML)
    const hostile = '\u001b[2J\u001b[31mX\r\nwarehouse  1  meter-9  forged'
    const [d1, d2, d3] = seed(f.dataDir, [row('cloud', 1), row('cloud', 2), row('warehouse', 3)], [
      { row: row('cloud', 4), reason: 'the stream refuses it as too large' },
      { row: row('cloud', 5, { id: hostile, device: 'meter-\u202e2' }), reason: `invalid subject 'a.${hostile}'` },
      { row: row('warehouse', 6), reason: 'max_message_size' },
    ])
    const c = ['--config', f.config]
    const json = async (args: string[]): Promise<unknown> => {
      const r = await outpost([...args, '--json', ...c], f.dir)
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(0)
      return JSON.parse(r.out) as unknown
    }
    expect(await json(['forward', 'status'])).toMatchObject([
      { target: 'cloud', waiting: 2, dead: 2 },
      { target: 'warehouse', waiting: 1, dead: 1 },
    ])
    expect(await json(['forward', 'status', '--target', 'warehouse'])).toMatchObject([{ target: 'warehouse', waiting: 1, dead: 1 }])
    const dead = (await json(['forward', 'dead'])) as { seq: number; id: string; device: string; reason: string }[]
    expect(dead.map((d) => d.seq)).toEqual([d1, d2, d3])
    // JSON carries the strings as they are.
    expect(dead[1]).toMatchObject({ id: hostile, device: 'meter-\u202e2' })
    expect(((await json(['forward', 'dead', '--limit', '1'])) as unknown[]).length).toBe(1)

    // Text: one line per dead letter, nothing a terminal would act on.
    const text = await outpost(['forward', 'dead', ...c], f.dir)
    expect(text.code).toBe(0)
    const lines = text.out.trim().split('\n')
    expect(lines).toHaveLength(3)
    expect(text.out).not.toMatch(/[\u001b\r\u202e]/)
    expect(lines[1]).toContain('meter-\\u202e2')
    expect(lines[1]).toContain('\\x1b[2J\\x1b[31mX\\r\\nwarehouse  1  meter-9  forged')
    const limited = await outpost(['forward', 'dead', '--limit', '2', ...c], f.dir)
    expect(limited.out.trim().split('\n').at(-1)).toBe('… 1 more (--limit N to see them)')

    // purge of one seq deletes that one; redrive of a target moves only its dead letters back.
    expect(await json(['forward', 'purge', String(d2)])).toEqual({ purged: 1 })
    expect(await json(['forward', 'redrive', '--target', 'warehouse'])).toEqual({ redriven: 1 })
    expect(await json(['forward', 'status'])).toMatchObject([
      { target: 'cloud', waiting: 2, dead: 1 },
      { target: 'warehouse', waiting: 2, dead: 0 },
    ])
    // purge without seqs deletes nothing; --all is every dead letter (of --target when given).
    expect((await outpost(['forward', 'purge', ...c], f.dir)).code).toBe(2)
    expect(((await json(['forward', 'dead'])) as unknown[]).length).toBe(1)
    seed(f.dataDir, [], [{ row: row('warehouse', 7), reason: 'refused' }])
    const ofTarget = await outpost(['forward', 'purge', '--all', '--target', 'warehouse', ...c], f.dir)
    expect([ofTarget.code, ofTarget.out.trim()]).toEqual([0, '1 dead letter deleted'])
    expect(((await json(['forward', 'dead'])) as { target: string }[]).map((d) => d.target)).toEqual(['cloud'])
    seed(f.dataDir, [], [{ row: row('warehouse', 8), reason: 'refused' }])
    const all = await outpost(['forward', 'purge', '--all', ...c], f.dir)
    expect([all.code, all.out.trim()]).toEqual([0, '2 dead letters deleted'])
    expect(await json(['forward', 'dead'])).toEqual([])
    expect(await json(['forward', 'status'])).toMatchObject([
      { target: 'cloud', waiting: 2, dead: 0 },
      { target: 'warehouse', waiting: 2, dead: 0 },
    ])
    const help = await outpost(['forward', '--help'], f.dir)
    expect([help.code, help.out]).toEqual([0, expect.stringContaining('Usage: outpost forward <command>')])
    expect(help.out).toContain('purge <seq…|--all>')
  }, 120_000)

  describe('beside a running gateway', () => {
    const cleanup = cleanupAfterEach()

    it('events the stream refused as too large are dead letters; after the stream takes them, a redrive sends them and the backlog ends at 0, not below', async () => {
      const tag = randomBytes(4).toString('hex')
      const stream = `FWD_CLI_${tag}`
      const nc = await natsConnect({ servers: '127.0.0.1:4222' })
      cleanup(() => nc.close())
      const jsm = await jetstreamManager(nc)
      cleanup(() => jsm.streams.delete(stream).catch(() => {}))
      // The operator's stream, made before the gateway binds to it: messages of 1 KiB at most.
      await jsm.streams.add({ name: stream, subjects: [`fwdcli${tag}.>`], max_msg_size: 1024 })
      const gw = await startGatewayProcess({
        devices: ['meter-1'],
        extra: `forward:\n  targets:\n    cloud: { type: nats, servers: nats://127.0.0.1:4222, stream: { name: ${stream}, create: false }, subject: 'fwdcli${tag}.{device}.{event}' }\n  routes:\n    - { to: [cloud] }\n`,
      })
      cleanup(() => gw.stop())
      const c = ['--config', gw.configFile]
      const forward = async (): Promise<{ targets: Record<string, { forwarded: number; dead: number; backlog: { messages: number; bytes: number } }> }> =>
        (await (await gw.get('/forward')).json()) as never
      const device = await gw.connect('meter-1')
      cleanup(() => device.endAsync(true))
      const send = (n: number, pad: number): Promise<unknown> =>
        device.publishAsync('ob/meter-1/evt/meter/1/reading', rawFrame(eventSlots({ src: 'meter-1', service: 'meter', name: 'reading', payload: { n, pad: 'x'.repeat(pad) } })), { qos: 1 })
      for (let n = 1; n <= 3; n++) await send(n, 4096)
      await send(4, 10)
      let s = await forward()
      for (const end = Date.now() + 30_000; (s.targets.cloud!.dead < 3 || s.targets.cloud!.forwarded < 1) && Date.now() < end; s = await forward()) await new Promise((r) => setTimeout(r, 100))
      expect(s.targets.cloud).toMatchObject({ forwarded: 1, dead: 3, backlog: { messages: 0, bytes: 0 } })
      const dead = JSON.parse((await outpost(['forward', 'dead', '--json', ...c], gw.dir)).out) as { reason: string }[]
      expect(dead).toHaveLength(3)
      expect(dead[0]!.reason).toContain('too large')

      // The operator lets the stream take them, and sends them again.
      const info = await jsm.streams.info(stream)
      await jsm.streams.update(stream, { ...info.config, max_msg_size: -1 })
      const redrive = await outpost(['forward', 'redrive', '--target', 'cloud', ...c], gw.dir)
      expect([redrive.code, redrive.out.trim()]).toEqual([0, '3 dead letters back in the forward queue'])
      for (const end = Date.now() + 30_000; s.targets.cloud!.forwarded < 4 && Date.now() < end; s = await forward()) await new Promise((r) => setTimeout(r, 100))
      // Was -3 messages and minus their bytes: the gateway had never counted what the CLI put back.
      expect(s.targets.cloud).toMatchObject({ forwarded: 4, dead: 0, backlog: { messages: 0, bytes: 0 } })
      expect((await jsm.streams.info(stream)).state.messages).toBe(4)
      const metrics = await (await gw.get('/metrics')).text()
      expect(metrics).toContain('outpost_gateway_forward_backlog_messages{target="cloud"} 0')
      expect(JSON.parse((await outpost(['forward', 'status', '--json', ...c], gw.dir)).out)).toEqual([])
      expect(gw.lines.join('\n')).not.toMatch(/\n\s+at .+:\d+:\d+/)
    }, 120_000)
  })
})
