// examples/cloud as its README runs it: the example's gateway.yaml (ports, data folder, NATS URL
// and RabbitMQ names moved for the test), `devices add`, the gateway and the two demo devices as
// processes, the cloud service on the NATS bridge, a command over NATS request/reply and curl, the
// stream viewed and the RabbitMQ queue read with the example's scripts, then NATS stopped and
// started again: the samples the gateway kept meanwhile all reach the stream, each once.
// NATS is a nats-server of the test's own (JetStream in a temp folder), since the README stops it;
// RabbitMQ is the shared one on 127.0.0.1:5672, with an exchange and queue named for this run.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import amqp from 'amqplib'
import { describe, expect, it } from 'vitest'
import YAML from 'yaml'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { startNatsMqtt } from '../helpers/nats-mqtt.js'
import { freePort, until } from '../helpers/wait.js'

const run = promisify(execFile)
const AMQP_URL = process.env.OUTPOST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
const TOKEN = 'cloud-example-token-0123456789'
// Variables a developer may have set that would change where these processes go are left out.
const UNSET = ['OUTPOST_MQTT_PORT', 'OUTPOST_MQTT_HOST', 'OUTPOST_GATEWAY_DATA_DIR', 'OUTPOST_HTTP_PORT', 'OUTPOST_HTTP_HOST', 'OUTPOST_AUTH', 'OUTPOST_GATEWAY_CONFIG', 'OUTPOST_LOG_LEVEL', 'OUTPOST_MQTT_USERNAME', 'OUTPOST_MQTT_PASSWORD', 'OUTPOST_MQTT_URL', 'OUTPOST_DEVICE_ID', 'NATS_URL', 'AMQP_URL']
const BASE_ENV: Record<string, string | undefined> = Object.fromEntries(Object.entries(process.env).filter(([k]) => !UNSET.includes(k)))

interface Proc {
  proc: ChildProcess
  out: () => string
  exited: Promise<number | null>
}

/** A credentials line as `devices add` prints it: the variables a device runs with. */
function deviceLine(out: string): Record<string, string> {
  const line = out.split('\n').find((l) => l.includes('OUTPOST_MQTT_URL='))
  if (line === undefined) expect.fail(`no device line in:\n${out}`)
  return Object.fromEntries([...line.matchAll(/(OUTPOST_\w+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]))
}

/** The sample numbers in the cloud service's `sample #N` lines. */
const samplesIn = (out: string): number[] => [...out.matchAll(/thermo-1 thermo\/1\/sample\.completed: sample #(\d+):/g)].map((m) => Number(m[1]))

/** The sample numbers of the sample.completed events view-stream.ts or read-rabbitmq.ts printed. */
const samplesInStream = (out: string): number[] => [...out.matchAll(/ thermo-1 thermo\/1\/sample\.completed \{.*"readings":(\d+)/g)].map((m) => Number(m[1]))

describe('examples/cloud, as its README runs it', () => {
  const cleanup = cleanupAfterEach()

  it('gateway with forward and commands, demo devices, cloud service on NATS, nats request, curl, stream, RabbitMQ queue, NATS stopped and back', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-cloud-example-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const nats = await startNatsMqtt()
    cleanup(() => nats.dispose())
    const tag = randomBytes(4).toString('hex')
    const exchange = `outpost.events.${tag}`
    const queue = `outpost.events.${tag}.all`
    const amqpConn = await amqp.connect(AMQP_URL)
    cleanup(() => amqpConn.close().catch(() => {}))
    const ch = await amqpConn.createChannel()
    cleanup(() => ch.deleteExchange(exchange).catch(() => {}), () => ch.deleteQueue(queue).catch(() => {}))

    // The example's file, with what must differ per run moved; everything else as it is.
    type Example = {
      dataDir: string
      mqtt: { port: number }
      http: { port: number }
      forward: { targets: { cloud: { servers: string; stream: { name: string } }; warehouse: { url: string; exchange: { name: string }; queue: { name: string } } } }
      commands: { nats: { servers: string } }
    }
    const example = YAML.parse(readFileSync('examples/cloud/gateway.yaml', 'utf8')) as Example
    expect(example.dataDir).toBe('data') // beside the file: the copy's data goes to the temp folder
    expect(example.forward.targets.cloud.servers).toBe('nats://127.0.0.1:4222')
    expect(example.forward.targets.cloud.stream.name).toBe('OUTPOST_EVENTS') // as the example's README says
    expect(example.forward.targets.warehouse.queue.name).toBe('outpost.events.all')
    expect(example.forward.targets.warehouse.url).toBe('amqp://guest:guest@127.0.0.1:5672')
    example.mqtt.port = await freePort()
    example.http.port = 0
    example.forward.targets.cloud.servers = nats.natsUrl
    example.commands.nats.servers = nats.natsUrl
    example.forward.targets.warehouse.url = AMQP_URL
    example.forward.targets.warehouse.exchange.name = exchange
    example.forward.targets.warehouse.queue.name = queue
    // Renamed: the scripts read the names from the file OUTPOST_GATEWAY_CONFIG names (targets.ts).
    const stream = `OUTPOST_EVENTS_${tag}`
    example.forward.targets.cloud.stream.name = stream
    const config = path.join(dir, 'gateway.yaml')
    writeFileSync(config, YAML.stringify(example))

    const ENV: Record<string, string> = { OUTPOST_HTTP_TOKEN: TOKEN, OUTPOST_LOG_FORMAT: 'json', OUTPOST_DATA_DIR: path.join(dir, 'devices'), OUTPOST_SAMPLE_MS: '500', NATS_URL: nats.natsUrl, AMQP_URL, OUTPOST_GATEWAY_CONFIG: config }
    const start = (args: string[], env: Record<string, string> = {}): Proc => {
      const proc = spawn(process.execPath, args, { env: { ...BASE_ENV, ...ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      proc.stdout!.on('data', (c: Buffer) => (out += c.toString()))
      proc.stderr!.on('data', (c: Buffer) => (out += c.toString()))
      const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)))
      cleanup(async () => {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
        await exited
      })
      return { proc, out: () => out, exited }
    }
    const outpost = async (args: string[]): Promise<string> => (await run(process.execPath, ['bin/outpost.js', ...args], { env: { ...BASE_ENV, ...ENV }, timeout: 20_000 })).stdout
    const script = async (name: string, args: string[] = []): Promise<string> => (await run(process.execPath, ['--import', 'tsx', `examples/cloud/${name}`, ...args], { env: { ...BASE_ENV, ...ENV }, timeout: 30_000 })).stdout
    const logLines = (p: Proc): { msg: string; http?: string }[] =>
      p
        .out()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg: string })

    // 1. Devices, 2. the gateway (it creates the stream when it reaches NATS).
    const thermo = deviceLine(await outpost(['devices', 'add', 'thermo-1', '--config', config]))
    const display = deviceLine(await outpost(['devices', 'add', 'display-1', '--config', config]))
    const gw = start(['bin/outpost.js', 'gateway', '--config', config])
    const ready = () => logLines(gw).find((l) => l.msg === 'gateway ready')
    await until(() => (ready() !== undefined && logLines(gw).some((l) => l.msg === 'nats target connected')) || gw.proc.exitCode !== null, 30_000).catch(() => expect.fail(`the gateway did not connect to NATS:\n${gw.out()}`))
    if (gw.proc.exitCode !== null) expect.fail(`the gateway stopped:\n${gw.out()}`)
    const http = ready()!.http!

    // 3. The demo devices.
    start(['bin/outpost.js', 'device', 'thermo'], thermo)
    const displayProc = start(['bin/outpost.js', 'device', 'display'], display)
    await until(() => /heard a sample result/.test(displayProc.out()), 30_000).catch(() => expect.fail(`no sample reached the display:\n${displayProc.out()}`))

    // 4. The cloud service: its fleet.check calls thermo-1 through the gateway, then it reads the stream.
    const cloud = start(['--import', 'tsx', 'examples/cloud/cloud-service.ts'])
    await until(() => samplesIn(cloud.out()).length >= 3, 30_000).catch(() => expect.fail(`the cloud service read no samples from JetStream:\n${cloud.out()}`))
    expect(cloud.out()).toMatch(/^fleet\.check: thermo-1 reads -?\d+(\.\d+)? °C$/m)
    expect(cloud.out()).toMatch(/^jetstream #\d+ thermo-1 thermo\/1\/reading: -?\d+(\.\d+)? °C$/m)
    // The thermo's `due` ticks are not routed to the cloud.
    expect(cloud.out()).not.toContain('thermo/1/due')

    // 5. Commands from the cloud: NATS request/reply (the nats CLI's stand-in) and curl.
    const reply = JSON.parse(await script('nats-request.ts', ['outpost.cmd.thermo-1.thermo.1.read', '{"unit":"F"}'])) as { result: { value: number; unit: string; at: number } }
    expect(reply.result.unit).toBe('F')
    expect(typeof reply.result.value).toBe('number')
    const shown = JSON.parse(await script('nats-request.ts', ['outpost.cmd.display-1.display.1.show', '{"text":"hello from NATS"}'])) as { result: { shown: boolean } }
    expect(shown.result.shown).toBe(true)
    await until(() => displayProc.out().includes('hello from NATS'), 10_000)
    const unknown = JSON.parse(await script('nats-request.ts', ['outpost.cmd.thermo-9.thermo.1.read'])) as { error: { code: string } }
    expect(unknown.error.code).toBe('DEVICE_UNKNOWN')
    const invalid = JSON.parse(await script('nats-request.ts', ['outpost.cmd.thermo-1.thermo.1.read', '{"unit":"K"}'])) as { error: { code: string } }
    expect(invalid.error.code).toBe('VALIDATION_FAILED')
    const curl = await run('curl', ['-s', '-X', 'POST', '-H', `Authorization: Bearer ${TOKEN}`, `${http}/devices/thermo-1/commands/thermo/1/read`, '-d', '{"unit":"F"}'])
    expect((JSON.parse(curl.stdout) as { result: { unit: string } }).result.unit).toBe('F')
    const noToken = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', `${http}/devices/thermo-1/commands/thermo/1/read`, '-d', '{}'])
    expect(noToken.stdout).toBe('401')

    // 6. The stream and the RabbitMQ queue, with the example's scripts.
    const viewed = await script('view-stream.ts')
    expect(viewed).toMatch(/^#\d+ \S+ thermo-1 thermo\/1\/sample\.completed \{/m)
    expect(viewed).toMatch(new RegExp(`^${stream}: \\d+ messages$`, 'm'))
    expect(viewed).toMatch(/^thermo-1: samples #\d+ to #\d+, 0 missing, 0 twice$/m)
    const taken = await script('read-rabbitmq.ts')
    expect(taken).toMatch(/^\S+ thermo-1 thermo\/1\/reading \{"deviceId":"thermo-1"/m)
    expect(taken).toMatch(/^\S+ thermo-1 thermo\/1\/sample\.completed \{/m)
    expect(Number(new RegExp(`^${queue.replaceAll('.', '\\.')}: took (\\d+) events$`, 'm').exec(taken)?.[1])).toBeGreaterThan(0)

    // 7. The cloud link cut: NATS stops. The thermo goes on; the gateway keeps its events on disk.
    const beforeCut = Math.max(...samplesIn(cloud.out()))
    await nats.stop()
    const waiting = async (): Promise<number> => {
      const rows = JSON.parse(await outpost(['forward', 'status', '--json', '--config', config])) as { target: string; waiting: number }[]
      return rows.find((r) => r.target === 'cloud')?.waiting ?? 0
    }
    await eventually(async () => (await waiting()) >= 6, 'events waiting for the cloud target while NATS is down')

    // NATS back (its JetStream store kept): the backlog drains, the cloud service reads on.
    await nats.restart()
    await eventually(async () => (await waiting()) === 0, 'the forward backlog drained after NATS came back')
    const viewedAfter = await script('view-stream.ts')
    expect(viewedAfter).toMatch(/^thermo-1: samples #1 to #\d+, 0 missing, 0 twice$/m)
    const lastInStream = Math.max(...samplesInStream(viewedAfter))
    expect(lastInStream).toBeGreaterThan(beforeCut + 3) // samples of the outage are in
    await until(() => samplesIn(cloud.out()).includes(lastInStream), 60_000).catch(() => expect.fail(`the cloud service did not read on after NATS came back:\n${cloud.out().slice(-2_000)}`))
    // The durable consumer read every sample from its first to its last: none lost in the cut.
    const read = new Set(samplesIn(cloud.out()))
    expect(read.size).toBe(Math.max(...read) - Math.min(...read) + 1)
    // RabbitMQ was not cut: with what step 6 took, the queue had every sample from the first on.
    const rabbitSamples = new Set(samplesInStream(taken + (await script('read-rabbitmq.ts', [queue]))))
    expect(Math.min(...rabbitSamples)).toBe(1)
    expect(rabbitSamples.size).toBe(Math.max(...rabbitSamples))
    expect(Math.max(...rabbitSamples)).toBeGreaterThanOrEqual(lastInStream)
    // Commands over NATS work again: the gateway's command front end reconnected too.
    await eventually(async () => ((JSON.parse(await script('nats-request.ts')) as { result?: unknown }).result !== undefined), 'a NATS command after NATS came back')

    // Ctrl-C stops the cloud service cleanly.
    cloud.proc.kill('SIGINT')
    expect(await cloud.exited).toBe(0)
  }, 180_000)
})

/** Polls an asynchronous condition until it holds (60 s at most), failing with what it waited for. */
async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  const end = Date.now() + 60_000
  while (!(await check().catch(() => false))) {
    if (Date.now() > end) expect.fail(`waited in vain for ${what}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}
