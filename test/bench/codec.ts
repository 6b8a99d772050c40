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

export function benchCodec(ms: number): BenchResult[] {
  const codec = createEnvelopeCodec()
  const env = telemetryEvent()
  const bytes = codec.encode(env)
  const json = JSON.stringify(env)
  const jsonBytes = Buffer.byteLength(json)
  let sink = 0
  const jsonEncode = rate(() => { sink += JSON.stringify(env).length }, ms)
  const jsonDecode = rate(() => { sink += (JSON.parse(json) as Envelope).at }, ms)
  const cborEncode = rate(() => { sink += codec.encode(env).length }, ms)
  const cborDecode = rate(() => {
    const r = codec.decode(bytes)
    if (r.ok) sink += r.envelope.at
  }, ms)
  if (sink === 0) throw new Error('unreachable')
  const size = { bytes: bytes.length, json_bytes: jsonBytes, size_ratio: Number((bytes.length / jsonBytes).toFixed(2)) }
  return [
    { system: 'json', workload: 'envelope-encode', concurrency: 1, ops_per_s: jsonEncode, p50_us: null, p99_us: null, extra: { bytes: jsonBytes } },
    { system: 'outpost-cbor', workload: 'envelope-encode', concurrency: 1, ops_per_s: cborEncode, p50_us: null, p99_us: null, extra: size },
    { system: 'json', workload: 'envelope-decode', concurrency: 1, ops_per_s: jsonDecode, p50_us: null, p99_us: null, extra: { bytes: jsonBytes } },
    { system: 'outpost-cbor', workload: 'envelope-decode', concurrency: 1, ops_per_s: cborDecode, p50_us: null, p99_us: null, extra: { ...size, note: 'decode includes envelope validation' } },
  ]
}
