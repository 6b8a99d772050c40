// Mutated frames for the fuzz test: valid commands, events, replies and presence of the device under attack
// (test/e2e/chaos/fuzz-device.ts), bent in the ways a hostile client on the broker can bend them.
// Everything comes from one seeded generator, so a failing run can be replayed with its seed.
import { cborHead, commandSlots, eventSlots, FIELD, presenceSlots, rawEncoder, rawFrame, replySlots } from './raw-wire.js'

/** One frame to publish. */
export interface FuzzFrame {
  topic: string
  frame: Buffer
  qos: 0 | 1
  /** Which template and mutation made it (for failure messages and the tally). */
  what: string
}

/** What the mutator needs to know about the scene. */
export interface FuzzScene {
  /** The device under attack. */
  device: string
  /** Ids of commands the device has sent and may still wait for (spoofed replies use them). */
  pendingCorr(): string | undefined
}

/** A small, fast PRNG (mulberry32): the same seed gives the same frames. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')

/** A chain of `depth` shared arrays, each holding the next one twice (once as a reference): acyclic, 2^depth leaves in a few bytes per level. */
export function sharedDag(depth: number): Buffer {
  const parts: Buffer[] = []
  for (let i = 0; i < depth; i++) parts.push(hex('d81c 82'))
  parts.push(hex('d81c 80')) // the innermost shared value: [] (id `depth`)
  // From the innermost level out: level i's second item refers to level i + 1, read just before.
  for (let i = depth - 1; i >= 0; i--) parts.push(Buffer.concat([hex('d81d'), cborHead(0, i + 1)]))
  return Buffer.concat(parts)
}

/** Value-sharing (tags 28/29) shapes: cycles, dangling and shared references. */
export const SHARING: readonly Buffer[] = [
  hex('d81c 81 d81d 00'), // an array that contains itself
  hex('d81c a1 6161 d81d 00'), // {a: itself}: 8 bytes
  hex('d81c a2 626174 01 6173 d81d 00'), // {at: 1, s: itself}
  hex('d81d 00'), // a reference to nothing shared
  hex('d81d 05'),
  hex('d81c 82 d81c 80 d81d 01'), // [[], the same []]
  hex('d81c d81c d81c 81 d81d 02'), // nested shares of one array holding itself
  sharedDag(8),
  sharedDag(16),
]

/** Other tags cbor-x gives meaning to (dates, bignums, records, typed arrays, Map/Set, generic objects, packing) and unknown ones. */
export const TAGGED: readonly Buffer[] = [
  hex('c0 74 323032362d31312d32365431323a30303a30305a'), // tag 0: date string
  hex('c0 63 616263'), // tag 0: not a date
  hex('c1 1b 7fffffffffffffff'), // tag 1: epoch far away
  hex('c2 48 0102030405060708'), // tag 2: bignum
  hex('c3 41 ff'), // tag 3: negative bignum
  hex('c4 82 20 1903e8'), // tag 4: decimal fraction
  hex('c5 82 387f 01'), // tag 5: bigfloat
  hex('c6 00'), // tag 6: packed reference without a table
  hex('d8 33 84 80 80 80 80'), // tag 51: packed table
  hex('ce 01'), // tag 14: bundled string
  hex('cf 01'),
  hex('d8 1b 82 65 4572726f72 61 78'), // tag 27: Error("x")
  hex('d8 1b 83 66 526567457870 65 28612b292b 61 67'), // tag 27: RegExp("(a+)+", "g")
  hex('d8 1b 82 66 537472696e67 61 78'), // tag 27: not an allowed constructor
  hex('d8 69 83 19 e000 81 61 61 01'), // tag 105: legacy record definition
  hex('d9 dfff 83 19 e001 81 61 62 02'), // record inline definition
  hex('d9 dffe 80'), // record definitions
  hex('d9 dff9 82 61 61 61 62'), // bundled strings
  hex('d9 0102 83 01 02 03'), // tag 258: Set
  hex('d9 0103 a1 61 61 01'), // tag 259: Map
  hex('d8 40 43 010203'), // tag 64: Uint8Array
  hex('d8 45 44 01000200'), // tag 69: Uint16Array (little endian)
  hex('d8 48 41 ff'), // tag 72: Int8Array
  hex('d8 55 48 0000000000000000'), // tag 85: Float64Array (little endian)
  hex('d8 55 43 000000'), // a typed array of a length that does not fit its element size
  hex('d8 19 00'), // tag 25: string reference
  hex('d9 0100 81 61 61'), // tag 256: string reference namespace
  hex('d8 ff 00'), // an unknown tag
  hex('da ffffffff 00'),
  hex('db ffffffffffffffff 00'),
  hex('d8 1c d8 1c d8 1c 00'), // shares of a plain value
]

/** Odd but well-formed CBOR for any field: half floats, 8-byte ints, indefinite lengths, byte strings, undefined. */
const ODD: readonly Buffer[] = [
  hex('f9 3c00'), // half float 1.0
  hex('f9 7e00'), // half float NaN
  hex('fa 7f800000'), // float Infinity
  hex('1b ffffffffffffffff'), // 2^64 - 1
  hex('3b ffffffffffffffff'),
  hex('5f 41 61 41 62 ff'), // indefinite byte string
  hex('7f 61 61 61 62 ff'), // indefinite text string
  hex('9f 01 02 ff'), // indefinite array
  hex('bf 61 61 01 ff'), // indefinite map
  hex('f7'), // undefined
  hex('f0'), // simple value 16
  hex('f8 ff'), // simple value 255
  hex('62 c328'), // invalid UTF-8
  hex('a2 61 61 01 61 61 02'), // a map with a repeated key
  hex('a1 69 5f5f70726f746f5f5f a1 61 61 01'), // {__proto__: {a: 1}}
  hex('a1 6b 636f6e7374727563746f72 01'), // {constructor: 1}
  hex('a1 01 02'), // a map with an integer key
  hex('a1 a0 01'), // a map with a map as key
]

/** Values of the wrong type for any field. */
const WRONG: readonly unknown[] = [
  -1, 0, 2, 4, 255, 2 ** 31, 2 ** 53, -(2 ** 53), 1.5, -0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY,
  '', 'x', '1', '0', 'command', true, false, null, [], [1, 2], ['a', 1], {}, { a: 1 }, { code: 'X' }, { code: 1, message: 2 },
  Buffer.from([1, 2, 3]), 'ü'.repeat(40), 'x'.repeat(300),
]

/** Strings that are not a valid single topic level. */
const TOPIC_BREAKERS: readonly string[] = ['#', '+', '/', 'a/b', '#/+', 'x/#', '+/+', '\0', 'a\0b', '', ' ', 'a'.repeat(129), 'ü/#', '$SYS', '$SYS/broker', '..', 'a'.repeat(70_000), `${'b'.repeat(65_535)}#`]

const STRING_FIELDS = [FIELD.id, FIELD.src, FIELD.inst, FIELD.service, FIELD.version, FIELD.name, FIELD.corr, FIELD.replyTo, FIELD.target, FIELD.traceparent, FIELD.tenant, FIELD.principal]

/** Template kinds, with their share of the frames. */
const TEMPLATES = ['put', 'configure', 'reset', 'unknown', 'reading', 'sample', 'reply', 'presence'] as const
type Template = (typeof TEMPLATES)[number]

/** Creates the seeded frame generator; `next()` gives one mutated (or valid) frame. */
export function createFrameMutator(seed: number, scene: FuzzScene): { next(opts?: { big?: boolean }): FuzzFrame; tally(): Record<string, number> } {
  const rnd = seededRandom(seed)
  const int = (n: number): number => Math.floor(rnd() * n)
  const pick = <T>(a: readonly T[]): T => a[int(a.length)]!
  const chance = (p: number): boolean => rnd() < p
  const dev = scene.device
  const counts: Record<string, number> = {}
  const recent: FuzzFrame[] = []
  let serial = 0

  const srcOf = (): string => pick(['fz1', 'fz2', 'fz3', 'peer-dev'])
  const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
  const idOf = (): string => Array.from({ length: 26 }, () => ALPHABET[int(32)]).join('')
  const template = (t: Template): { topic: string; slots: unknown[] } => {
    const src = srcOf()
    const n = int(1_000_000)
    switch (t) {
      case 'put':
        return { topic: `ob/${src}/cmd/${dev}/target/1/put`, slots: commandSlots({ id: idOf(), src, service: 'target', name: 'put', replyTo: 'sink', target: dev, payload: { name: `n${n}`, n } }) }
      case 'configure':
        return { topic: `ob/${src}/cmd/${dev}/target/1/configure`, slots: commandSlots({ id: idOf(), src, service: 'target', name: 'configure', replyTo: 'sink', target: dev, payload: chance(0.5) ? { label: 'l' } : { level: n } }) }
      case 'reset':
        return { topic: `ob/${src}/cmd/${dev}/target/1/reset`, slots: commandSlots({ id: idOf(), src, service: 'target', name: 'reset', replyTo: 'sink', target: dev, payload: {} }) }
      case 'unknown':
        return { topic: `ob/${src}/cmd/${dev}/target/1/nope`, slots: commandSlots({ id: idOf(), src, service: 'target', name: 'nope', replyTo: 'sink', target: dev, payload: {} }) }
      case 'reading':
        return { topic: `ob/${src}/evt/sensor/1/reading`, slots: eventSlots({ id: idOf(), src, service: 'sensor', name: 'reading', payload: { value: n } }) }
      case 'sample':
        return { topic: `ob/${src}/evt/sensor/1/sample`, slots: eventSlots({ id: idOf(), src, service: 'sensor', name: 'sample', payload: { at: n } }) }
      case 'presence': {
        // Never in the peer's name: the device under attack keeps calling the real one.
        const from = pick(['fz1', 'fz2', 'fz3'])
        const services = [{ name: `svc-${from}`, version: '1', commands: ['a'], events: [] }]
        return { topic: `ob/${from}/status`, slots: presenceSlots({ id: idOf(), src: from, online: chance(0.8), services }) }
      }
      case 'reply':
        return { topic: `ob/${src}/rep/${dev}`, slots: replySlots({ id: idOf(), src, corr: (chance(0.5) ? scene.pendingCorr() : undefined) ?? idOf(), replyTo: dev, payload: { n } }) }
    }
  }

  const flipBits = (b: Buffer): Buffer => {
    const out = Buffer.from(b)
    for (let k = 1 + int(8); k > 0 && out.length > 0; k--) out[int(out.length)]! ^= 1 << int(8)
    return out
  }
  const randomBytes = (n: number): Buffer => {
    const out = Buffer.alloc(n)
    for (let i = 0; i < n; i++) out[i] = int(256)
    return out
  }
  const deep = (): Buffer => {
    const depth = pick([64, 500, 5_000, 50_000])
    return chance(0.5) ? Buffer.concat([Buffer.alloc(depth, 0x81), hex('00')]) : Buffer.concat([Buffer.from(hex('a16161').toString('latin1').repeat(depth), 'latin1'), hex('00')])
  }
  const slot = (slots: unknown[], i: number): void => {
    while (slots.length <= i) slots.push(null)
  }

  const mutate = (topic: string, slots: unknown[], big: boolean): { frame: Buffer; how: string } => {
    const r = rnd()
    if (big) {
      const size = pick([100_000, 200_000, 250_000, 270_000])
      slots[FIELD.payload] = { at: 'x', name: 'x'.repeat(size), n: 1 }
      return { frame: rawFrame(slots), how: `big${size}` }
    }
    if (r < 0.12) return { frame: rawFrame(slots), how: 'valid' }
    if (r < 0.14 && recent.length > 0) return { frame: pick(recent).frame, how: 'replay' }
    if (r < 0.28) return { frame: flipBits(rawFrame(slots)), how: 'bitflip' }
    if (r < 0.36) {
      const f = rawFrame(slots)
      return { frame: f.subarray(0, int(f.length)), how: 'truncate' }
    }
    if (r < 0.4) {
      const head = chance(0.5) ? Buffer.from([0x80 | int(32)]) : Buffer.alloc(0)
      return { frame: Buffer.concat([head, randomBytes(int(300))]), how: 'random' }
    }
    if (r < 0.58) {
      const i = int(FIELD.error + 1)
      slot(slots, i)
      if (chance(0.25)) return { frame: rawFrame(slots, { [i]: pick(ODD) }), how: `odd${i}` }
      slots[i] = pick(WRONG)
      return { frame: rawFrame(slots), how: `wrong${i}` }
    }
    if (r < 0.6) {
      const i = pick(STRING_FIELDS)
      slots[i] = 'h'.repeat(pick([300, 4_096, 70_000]))
      return { frame: rawFrame(slots), how: `huge${i}` }
    }
    if (r < 0.68) {
      const i = pick([FIELD.src, FIELD.replyTo, FIELD.target])
      slots[i] = pick(TOPIC_BREAKERS)
      return { frame: rawFrame(slots), how: `level${i}` }
    }
    if (r < 0.71) {
      if (chance(0.1)) return { frame: Buffer.from(pick(SHARING)), how: 'shareFrame' }
      return { frame: rawFrame(slots, { [chance(0.8) ? FIELD.payload : pick(STRING_FIELDS)]: pick(SHARING) }), how: 'share' }
    }
    if (r < 0.74) {
      const i = chance(0.7) ? FIELD.payload : int(FIELD.error + 1)
      slot(slots, i)
      return { frame: rawFrame(slots, { [i]: pick(TAGGED) }), how: `tag${i}` }
    }
    if (r < 0.76) {
      const i = chance(0.7) ? FIELD.payload : int(FIELD.error + 1)
      slot(slots, i)
      return { frame: rawFrame(slots, { [i]: deep() }), how: 'deep' }
    }
    if (r < 0.82) {
      const i = topic.includes('/rep/') && chance(0.5) ? FIELD.error : FIELD.payload
      slot(slots, i)
      slots[i] = pick([[], [1], ['a', 1], [{ name: 'a', n: 1 }], [[]], [{ at: 1 }], [{ value: 1 }]])
      return { frame: rawFrame(slots), how: 'array' }
    }
    if (r < 0.86) {
      switch (int(6)) {
        case 0:
          return { frame: rawEncoder.encode(pick([{}, { v: 1 }, 'frame', 42, null, true])), how: 'notArray' }
        case 1:
          return { frame: rawFrame(slots.slice(0, int(6))), how: 'short' }
        case 2:
          return { frame: rawFrame([...slots, ...Array.from({ length: 1 + int(8) }, () => null)]), how: 'long' }
        case 3:
          slots[FIELD.v] = pick([0, 2, '1', 1.5, -1, null])
          return { frame: rawFrame(slots), how: 'version' }
        case 4:
          slots[FIELD.kind] = pick([4, 9, -1, '0', 1.5, null, 3])
          return { frame: rawFrame(slots), how: 'kind' }
        default: {
          // The whole array with an indefinite length.
          const f = rawFrame(slots)
          return { frame: Buffer.concat([hex('9f'), f.subarray(1), hex('ff')]), how: 'indefinite' }
        }
      }
    }
    if (r < 0.9) {
      slots[pick([FIELD.at, FIELD.deadline])] = pick([Number.NaN, Number.POSITIVE_INFINITY, -1, 0, 2 ** 62, 1.5, Date.now() - 60_000])
      return { frame: rawFrame(slots), how: 'time' }
    }
    if (r < 0.95) {
      const p = slots[FIELD.payload] as Record<string, unknown> | null
      const keys = ['name', 'n', 'at', 'value', 'label', 'level', 'online', 'services']
      slots[FIELD.payload] = { ...(typeof p === 'object' ? p : {}), [pick(keys)]: pick(WRONG) }
      return { frame: rawFrame(slots), how: 'payloadField' }
    }
    // Valid in shape, with fields that say something else than the topic.
    slots[pick([FIELD.service, FIELD.version, FIELD.name])] = pick(['target', 'sensor', 'probe', 'put', 'sample', '2', 'nope'])
    return { frame: rawFrame(slots), how: 'mismatch' }
  }

  return {
    next(o = {}) {
      serial++
      const t = o.big === true ? pick(['sample', 'sample', 'sample', 'put', 'reading'] as const) : pick(TEMPLATES)
      const { topic, slots } = template(t)
      const { frame, how } = mutate(topic, slots, o.big === true)
      const f: FuzzFrame = { topic, frame, qos: chance(0.5) ? 1 : 0, what: `${t}:${how}` }
      counts[how.replace(/\d+$/, '')] = (counts[how.replace(/\d+$/, '')] ?? 0) + 1
      if (how === 'valid') {
        recent.push(f)
        if (recent.length > 64) recent.shift()
      }
      return f
    },
    tally: () => ({ ...counts, frames: serial }),
  }
}
