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

/** SQLite's WAL checksum over `buf[start, end)`, continuing from `s` (updated in place). */
function checksum(buf: Buffer, start: number, end: number, bigEndian: boolean, s: [number, number]): void {
  let s0 = s[0]
  let s1 = s[1]
  for (let i = start; i < end; i += 8) {
    const a = bigEndian ? buf.readUInt32BE(i) : buf.readUInt32LE(i)
    const b = bigEndian ? buf.readUInt32BE(i + 4) : buf.readUInt32LE(i + 4)
    s0 = (s0 + a + s1) >>> 0
    s1 = (s1 + b + s0) >>> 0
  }
  s[0] = s0
  s[1] = s1
}

/**
 * Reads the write-ahead log `<file>-wal` (if there is one with frames in it) the way SQLite's
 * recovery does, frame by frame (one page in memory at a time), and reports what SQLite will
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
    const frame = Buffer.alloc(frameSize)
    let frames = 0
    let commits = 0
    let offset = HEADER
    for (; offset + frameSize <= bytes; offset += frameSize) {
      readSync(fd, frame, 0, frameSize, offset)
      if (frame.readUInt32BE(0) === 0 || frame.readUInt32BE(8) !== salt1 || frame.readUInt32BE(12) !== salt2) break
      checksum(frame, 0, 8, bigEndian, s)
      checksum(frame, FRAME_HEADER, frameSize, bigEndian, s)
      if (s[0] !== frame.readUInt32BE(16) || s[1] !== frame.readUInt32BE(20)) break
      frames++
      if (frame.readUInt32BE(4) !== 0) commits++
    }
    // Past the first frame that does not check: commit frames written for this same log (its
    // salts) were committed transactions that SQLite will not replay. Frames of an older log
    // (other salts) are leftovers SQLite had already checkpointed, and lose nothing.
    const broken = offset
    let lostCommits = 0
    const fh = Buffer.alloc(FRAME_HEADER)
    for (; offset + frameSize <= bytes; offset += frameSize) {
      readSync(fd, fh, 0, FRAME_HEADER, offset)
      if (fh.readUInt32BE(8) === salt1 && fh.readUInt32BE(12) === salt2 && fh.readUInt32BE(4) !== 0) lostCommits++
    }
    const check: WalCheck = { bytes, frames, commits }
    if (lostCommits > 0) check.damage = { reason: 'frame', offset: broken, lostCommits }
    return check
  } finally {
    closeSync(fd)
  }
}
