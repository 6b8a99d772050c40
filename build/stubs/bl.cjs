'use strict'
// Stands in for `bl` in device bundles (7 KB with its stream wrapper and `inherits`). Only
// mqtt-packet's parser requires it, and it uses a list of received chunks and nothing of the
// stream: `bl()`, then append, length, consume, slice, toString and readUInt8/16BE/32BE. These
// answer as bl's BufferList does, bytes, lengths and errors alike (a slice within one chunk is a
// view of it, a slice across chunks a copy); test/build/device-stubs.test.ts runs them beside
// the real one.
const { Buffer } = require('node:buffer')

class BufferList {
  constructor() {
    this._bufs = []
    this.length = 0
  }

  append(buf) {
    if (buf === null || buf === undefined) return this
    if (buf.buffer) this._push(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength))
    else if (Array.isArray(buf)) for (const b of buf) this.append(b)
    else if (buf instanceof BufferList) for (const b of buf._bufs) this._push(b)
    else this._push(Buffer.from(typeof buf === 'number' ? String(buf) : buf))
    return this
  }

  _push(b) {
    this._bufs.push(b)
    this.length += b.length
  }

  /** [chunk index, offset in it] of byte `at`; past the end, the last chunk. */
  _find(at) {
    let before = 0
    const last = this._bufs.length - 1
    for (let i = 0; i <= last; i++) {
      const size = this._bufs[i].length
      if (at < before + size || i === last) return [i, at - before]
      before += size
    }
    return [0, 0]
  }

  slice(start, end) {
    const total = this.length
    if (typeof start === 'number' && start < 0) start += total
    if (typeof end === 'number' && end < 0) end += total
    if (typeof start !== 'number' || start < 0) start = 0
    if (typeof end !== 'number' || end > total) end = total
    if (start >= total || end <= 0) return Buffer.alloc(0)
    if (start === 0 && end === total) return this._bufs.length === 1 ? this._bufs[0] : Buffer.concat(this._bufs, total)
    const [first, offset] = start === 0 ? [0, 0] : this._find(start)
    const wanted = end - start
    const chunk = this._bufs[first]
    if (wanted <= chunk.length - offset) return chunk.subarray(offset, offset + wanted)
    const out = Buffer.allocUnsafe(wanted)
    let from = offset
    let written = 0
    let left = wanted
    for (let i = first; i < this._bufs.length; i++) {
      const b = this._bufs[i]
      const here = b.length - from
      b.copy(out, written, from, from + Math.min(left, here))
      written += here
      if (left <= here) break
      left -= here
      from = 0
    }
    return out.length > written ? out.subarray(0, written) : out
  }

  toString(encoding, start, end) {
    return this.slice(start, end).toString(encoding)
  }

  consume(bytes) {
    bytes = Math.trunc(bytes)
    if (Number.isNaN(bytes) || bytes <= 0) return this
    while (this._bufs.length > 0) {
      const head = this._bufs[0]
      if (bytes < head.length) {
        this._bufs[0] = head.subarray(bytes)
        this.length -= bytes
        break
      }
      bytes -= head.length
      this.length -= head.length
      this._bufs.shift()
    }
    return this
  }

  readUInt8(offset = 0) {
    return this.slice(offset, offset + 1).readUInt8(0)
  }

  readUInt16BE(offset = 0) {
    return this.slice(offset, offset + 2).readUInt16BE(0)
  }

  readUInt32BE(offset = 0) {
    return this.slice(offset, offset + 4).readUInt32BE(0)
  }
}

module.exports = function bl() {
  return new BufferList()
}
module.exports.BufferList = BufferList
