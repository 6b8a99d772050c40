// checkWal against logs SQLite wrote, and against the same logs with their checksums in the other
// byte order (what a big-endian machine writes): the check sums words as they lie in memory when
// the log's byte order is the machine's, and reads each word swapped otherwise. Both must say what
// SQLite itself replays.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { checkWal } from '../../runtime/stores/sqlite/index.js'
import { openLogWriter } from '../helpers/log-writer.js'

const MAGIC_LE = 0x377f0682
const MAGIC_BE = 0x377f0683

/** SQLite's log checksum, written out plainly from its file-format description (not the runtime's code). */
function reference(buf: Buffer, start: number, end: number, bigEndian: boolean, s: [number, number]): [number, number] {
  let [s0, s1] = s
  for (let i = start; i < end; i += 8) {
    const a = bigEndian ? buf.readUInt32BE(i) : buf.readUInt32LE(i)
    const b = bigEndian ? buf.readUInt32BE(i + 4) : buf.readUInt32LE(i + 4)
    s0 = (s0 + a + s1) % 2 ** 32
    s1 = (s1 + b + s0) % 2 ** 32
  }
  return [s0, s1]
}

/** The log `wal` rewritten with its checksums in byte order `bigEndian` (salts, pages and commit marks unchanged). */
function reorder(wal: Buffer, bigEndian: boolean): Buffer {
  const out = Buffer.from(wal)
  out.writeUInt32BE(bigEndian ? MAGIC_BE : MAGIC_LE, 0)
  let s = reference(out, 0, 24, bigEndian, [0, 0])
  out.writeUInt32BE(s[0], 24)
  out.writeUInt32BE(s[1], 28)
  const frame = 24 + out.readUInt32BE(8)
  for (let at = 32; at + frame <= out.length; at += frame) {
    s = reference(out, at, at + 8, bigEndian, s)
    s = reference(out, at + 24, at + frame, bigEndian, s)
    out.writeUInt32BE(s[0], at + 16)
    out.writeUInt32BE(s[1], at + 20)
  }
  return out
}

describe('checkWal', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'outpost-wal-'))
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  /** A database with `commits` committed transactions in its log, never checkpointed; returns the log. */
  const writer = (commits: number): { src: string; wal: Buffer } => {
    const src = path.join(dir, 'src.db')
    const { db: w, insert } = openLogWriter(src)
    for (let n = 0; n < commits; n++) insert.run(n, Buffer.alloc(1500, n % 256))
    const wal = readFileSync(`${src}-wal`)
    copyFileSync(src, path.join(dir, 'main.db'))
    w.close()
    return { src, wal }
  }
  /** A copy of the database with `wal` as its log; its path. */
  const withLog = (name: string, wal: Buffer): string => {
    const f = path.join(dir, name)
    copyFileSync(path.join(dir, 'main.db'), f)
    writeFileSync(`${f}-wal`, wal)
    return f
  }

  it('reads a log of several hundred frames (more than one read of the file) in either byte order alike', () => {
    const { wal } = writer(400) // ~1,000 frames of 4 KiB: the check reads the file in pieces
    const frame = 24 + wal.readUInt32BE(8)
    expect((wal.length - 32) / frame).toBeGreaterThan(200)
    const little = checkWal(withLog('le.db', reorder(wal, false)))
    const big = checkWal(withLog('be.db', reorder(wal, true)))
    const asWritten = checkWal(withLog('as-written.db', wal))
    expect(asWritten?.damage).toBeUndefined()
    expect(asWritten?.commits).toBeGreaterThanOrEqual(401) // the CREATE TABLE and every insert
    expect(little).toEqual(asWritten)
    expect(big).toEqual(asWritten)
    // SQLite replays the log in both orders: every row is there.
    for (const f of ['le.db', 'be.db']) {
      const db = new Database(path.join(dir, f))
      expect(db.prepare('SELECT COUNT(*) FROM t').pluck().get()).toBe(400)
      db.close()
    }
  })

  it('finds the same damaged frame, and the same commits lost after it, in either byte order', () => {
    const { wal } = writer(300)
    const frame = 24 + wal.readUInt32BE(8)
    const frames = Math.floor((wal.length - 32) / frame)
    // A byte of a page in a frame past the first read of the file goes bad.
    const bad = Math.floor(frames * 0.7)
    for (const bigEndian of [false, true]) {
      const log = reorder(wal, bigEndian)
      log[32 + bad * frame + 24 + 100]! ^= 0xff
      const f = withLog(bigEndian ? 'be.db' : 'le.db', log)
      const check = checkWal(f)
      expect(check?.frames).toBe(bad)
      expect(check?.damage?.reason).toBe('frame')
      expect(check?.damage?.offset).toBe(32 + bad * frame)
      const lost = check?.damage?.lostCommits ?? 0
      expect(lost).toBeGreaterThan(50)
      // What SQLite keeps is what the check said it would.
      const db = new Database(f)
      expect(db.prepare('SELECT COUNT(*) FROM t').pluck().get()).toBe(300 - lost)
      db.close()
    }
  })

  it('counts only the whole frames of a log cut short in the middle of one', () => {
    const { wal } = writer(50)
    const frame = 24 + wal.readUInt32BE(8)
    const cut = wal.subarray(0, wal.length - Math.floor(frame / 2))
    const whole = checkWal(withLog('whole.db', wal))
    const check = checkWal(withLog('cut.db', cut))
    expect(check?.frames).toBe((whole?.frames ?? 0) - 1)
    expect(check?.damage).toBeUndefined()
  })
})
