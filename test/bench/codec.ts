// Envelope codec on a typical telemetry event (8 payload fields) vs JSON of the same object.
import { createEnvelopeCodec, createMessageIdFactory, type Envelope } from '../../runtime/index.js'
import { rate, type BenchResult } from './measure.js'

export function telemetryEvent(): Envelope {
  return {
    v: 1, kind: 'event', id: createMessageIdFactory()(), src: 'greenhouse-07', inst: 'K3M9QZ2T0A', at: 1_732_350_000_123,
    service: 'climate', version: '1', name: 'sampled',
    payload: { deviceId: 'greenhouse-07', temperature: 23.4, humidity: 61.2, co2: 612, lux: 18_250, battery: 0.87, rssi: -67, ts: 1_732_350_000_000 },
  }
}

const ROUNDS = 5

export function benchCodec(ms: number): BenchResult[] {
  const codec = createEnvelopeCodec()
  // 1,024 distinct events (ids and readings differ, as on the wire), cycled through, so a
  // decoder gains nothing from having seen the very same frame before.
  const ids = createMessageIdFactory()
  const envs = Array.from({ length: 1024 }, (_, i) => {
    const e = telemetryEvent()
    e.id = ids()
    e.at += i
    ;(e.payload as { temperature: number }).temperature = 20 + (i % 97) / 10
    return e
  })
  const frames = envs.map((e) => Buffer.from(codec.encode(e)))
  const jsons = envs.map((e) => JSON.stringify(e))
  const env = envs[0]!
  const bytes = frames[0]!
  const json = jsons[0]!
  const jsonBytes = Buffer.byteLength(json)
  let sink = 0
  let i = 0
  const fns = {
    jsonEncode: () => { sink += JSON.stringify(envs[i++ & 1023]).length },
    jsonDecode: () => { sink += (JSON.parse(jsons[i++ & 1023]!) as Envelope).at },
    cborEncode: () => { sink += codec.encode(envs[i++ & 1023]!).length },
    cborDecode: () => {
      const r = codec.decode(frames[i++ & 1023]!)
      if (r.ok) sink += r.envelope.at
    },
  }
  // Five rounds in turn, median of each: this machine's speed drifts by tens of per cent
  // over seconds, and a single measurement per system let that drift decide the ratio.
  const rounds: Record<keyof typeof fns, number[]> = { jsonEncode: [], jsonDecode: [], cborEncode: [], cborDecode: [] }
  for (let round = 0; round < ROUNDS; round++) {
    for (const name of Object.keys(fns) as (keyof typeof fns)[]) rounds[name].push(rate(fns[name], ms / 2))
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!
  const spread = (xs: number[]) => ({ min: Math.min(...xs), max: Math.max(...xs) })
  const jsonEncode = median(rounds.jsonEncode)
  const jsonDecode = median(rounds.jsonDecode)
  const cborEncode = median(rounds.cborEncode)
  const cborDecode = median(rounds.cborDecode)
  if (sink === 0) throw new Error('unreachable')
  const size = { bytes: bytes.length, json_bytes: jsonBytes, size_ratio: Number((bytes.length / jsonBytes).toFixed(2)) }
  return [
    { system: 'json', workload: 'envelope-encode', concurrency: 1, ops_per_s: jsonEncode, p50_us: null, p99_us: null, extra: { bytes: jsonBytes, ...spread(rounds.jsonEncode) } },
    { system: 'outpost-cbor', workload: 'envelope-encode', concurrency: 1, ops_per_s: cborEncode, p50_us: null, p99_us: null, extra: { ...size, ...spread(rounds.cborEncode) } },
    { system: 'json', workload: 'envelope-decode', concurrency: 1, ops_per_s: jsonDecode, p50_us: null, p99_us: null, extra: { bytes: jsonBytes, ...spread(rounds.jsonDecode) } },
    { system: 'outpost-cbor', workload: 'envelope-decode', concurrency: 1, ops_per_s: cborDecode, p50_us: null, p99_us: null, extra: { ...size, ...spread(rounds.cborDecode), note: 'decode includes envelope validation' } },
  ]
}
