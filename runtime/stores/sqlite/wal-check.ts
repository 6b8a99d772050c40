import { closeSync, fstatSync, openSync, readSync } from 'node:fs'

/**
 * What a look at a database's write-ahead log found before SQLite opened it. SQLite replays the
 * log's frames in order up to the last commit before the first frame whose checksum or salt
 * does not match, and silently ignores everything after it; this says what that leaves out.
 */
export interface WalCheck {
  /** Size of the -wal file, bytes. */
  bytes: number
  /** Frames SQLite will read (up to the first bad one). */
  frames: number
  /** Transactions SQLite will replay from the log. */
  commits: number
  /**
   * Set when SQLite will leave out committed transactions: the log's header is damaged (all of
   * it is ignored), or a frame is damaged and commits of the same log follow it.
   */
  damage?: {
    reason: 'header' | 'frame'
    /** Byte offset of the first frame (or the header) that does not check. */
    offset: number
    /** Commit frames of this log after that point, which SQLite will not replay (-1: cannot tell). */
    lostCommits: number
  }
}

const MAGIC_LE = 0x377f0682
const MAGIC_BE = 0x377f0683
const HEADER = 32
const FRAME_HEADER = 24

// True on a little-endian machine: a log whose checksums are in the machine's byte order is
// summed over its words as they lie in memory (SQLite's own "native" case), several times faster
// than reading each word through Buffer.
const HOST_LE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

/** SQLite's WAL checksum over `buf[start, end)`, continuing from `s` (updated in place). */
function checksum(buf: Buffer, start: number, end: number, bigEndian: boolean, s: [number, number]): void {
  let s0 = s[0]
  let s1 = s[1]
  if (bigEndian !== HOST_LE && (buf.byteOffset + start) % 4 === 0) {
    const w = new Uint32Array(buf.buffer, buf.byteOffset + start, (end - start) >>> 2)
    for (let i = 0; i + 1 < w.length; i += 2) {
      s0 = (s0 + w[i]! + s1) >>> 0
      s1 = (s1 + w[i + 1]! + s0) >>> 0
    }
  } else {
    for (let i = start; i < end; i += 8) {
      const a = bigEndian ? buf.readUInt32BE(i) : buf.readUInt32LE(i)
      const b = bigEndian ? buf.readUInt32BE(i + 4) : buf.readUInt32LE(i + 4)
      s0 = (s0 + a + s1) >>> 0
      s1 = (s1 + b + s0) >>> 0
    }
  }
  s[0] = s0
  s[1] = s1
}

/** Bytes read from the log at once (whole frames, at least one): not one system call per frame. */
const READ_BYTES = 256 * 1024

/**
 * Calls `each` with every whole frame of the log from `offset` on (the buffer and the frame's
 * position in it) until it returns false. @returns the offset of the frame it stopped at, or past the last whole frame
 */
function eachFrame(fd: number, bytes: number, offset: number, frameSize: number, each: (buf: Buffer, at: number) => boolean): number {
  const perRead = Math.max(1, Math.floor(READ_BYTES / frameSize))
  const chunk = Buffer.alloc(frameSize * perRead)
  while (offset + frameSize <= bytes) {
    const whole = Math.min(perRead, Math.floor((bytes - offset) / frameSize))
    const got = readSync(fd, chunk, 0, whole * frameSize, offset)
    const frames = Math.floor(got / frameSize)
    if (frames === 0) return offset // the file shrank under us: what was read is what there is
    for (let k = 0; k < frames; k++, offset += frameSize) if (!each(chunk, k * frameSize)) return offset
  }
  return offset
}

/**
 * Reads the write-ahead log `<file>-wal` (if there is one with frames in it) the way SQLite's
 * recovery does, frame by frame (read a few hundred KB at a time), and reports what SQLite will
 * replay and what it will leave out. Costs one read of the log; a cleanly closed database has none.
 * @returns undefined when there is no log, or an empty one
 */
export function checkWal(file: string): WalCheck | undefined {
  let fd: number
  try {
    fd = openSync(`${file}-wal`, 'r')
  } catch {
    return undefined
  }
  try {
    const bytes = fstatSync(fd).size
    if (bytes < HEADER) return undefined
    const head = Buffer.alloc(HEADER)
    readSync(fd, head, 0, HEADER, 0)
    const magic = head.readUInt32BE(0)
    const pageSize = head.readUInt32BE(8)
    const s: [number, number] = [0, 0]
    const bigEndian = magic === MAGIC_BE
    if (magic === MAGIC_LE || magic === MAGIC_BE) checksum(head, 0, 24, bigEndian, s)
    const headerOk = (magic === MAGIC_LE || magic === MAGIC_BE) && pageSize >= 512 && pageSize <= 65536 && (pageSize & (pageSize - 1)) === 0 &&
      s[0] === head.readUInt32BE(24) && s[1] === head.readUInt32BE(28)
    if (!headerOk) {
      // An empty log (header only) being damaged loses nothing.
      return bytes > HEADER ? { bytes, frames: 0, commits: 0, damage: { reason: 'header', offset: 0, lostCommits: -1 } } : undefined
    }
    const salt1 = head.readUInt32BE(16)
    const salt2 = head.readUInt32BE(20)
    const frameSize = FRAME_HEADER + pageSize
    let frames = 0
    let commits = 0
    const broken = eachFrame(fd, bytes, HEADER, frameSize, (buf, at) => {
      if (buf.readUInt32BE(at) === 0 || buf.readUInt32BE(at + 8) !== salt1 || buf.readUInt32BE(at + 12) !== salt2) return false
      checksum(buf, at, at + 8, bigEndian, s)
      checksum(buf, at + FRAME_HEADER, at + frameSize, bigEndian, s)
      if (s[0] !== buf.readUInt32BE(at + 16) || s[1] !== buf.readUInt32BE(at + 20)) return false
      frames++
      if (buf.readUInt32BE(at + 4) !== 0) commits++
      return true
    })
    // Past the first frame that does not check: commit frames written for this same log (its
    // salts) were committed transactions that SQLite will not replay. Frames of an older log
    // (other salts) are leftovers SQLite had already checkpointed, and lose nothing.
    let lostCommits = 0
    eachFrame(fd, bytes, broken, frameSize, (buf, at) => {
      if (buf.readUInt32BE(at + 8) === salt1 && buf.readUInt32BE(at + 12) === salt2 && buf.readUInt32BE(at + 4) !== 0) lostCommits++
      return true
    })
    const check: WalCheck = { bytes, frames, commits }
    if (lostCommits > 0) check.damage = { reason: 'frame', offset: broken, lostCommits }
    return check
  } finally {
    closeSync(fd)
  }
}
