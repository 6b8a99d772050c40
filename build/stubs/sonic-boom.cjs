'use strict'
// Stands in for sonic-boom (pino's destination) in device bundles. A device writes its log lines
// synchronously to one file descriptor (runtime/logger.ts asks pino.destination for fd 1, sync),
// so what is kept is that: each line written whole, at once, with fs.writeSync. Failures other
// than a full pipe are emitted as 'error' (pino turns the stream off on EPIPE, and so does the
// runtime's logger for every error).
//
// A full pipe (EAGAIN, EBUSY: the reader is slow, or stopped reading) is waited on for at most a
// second, not for ever as sonic-boom's synchronous mode does: a device whose log reader stalls
// must go on serving. After that, lines that find the pipe full are dropped at once and counted;
// the part of a line already written is finished first (no torn lines), and the first line that
// fits again is preceded by one saying how many were dropped.
//
// Asynchronous buffering (sync: false), minLength, maxLength, periodic flushes, reopen and fsync
// are sonic-boom's and not here: asking for them throws, saying so. pino() and
// pino.destination(fd) name no mode and get this synchronous writer.
const fs = require('node:fs')
const path = require('node:path')
const { EventEmitter } = require('node:events')

const BUSY_WAIT_MS = 100
const PATIENCE_MS = 1_000
const waitCell = new Int32Array(new SharedArrayBuffer(4))
// A JSON line's device field (pino writes the bindings before the message).
const DEVICE_FIELD = /"device":"(?:[^"\\]|\\.)*"/
const UNSUPPORTED = ['minLength', 'maxLength', 'periodicFlush', 'fsync', 'contentMode']

class SonicBoom extends EventEmitter {
  constructor (opts = {}) {
    super()
    for (const k of UNSUPPORTED) {
      if (opts[k]) throw new Error(`sonic-boom's ${k} was left out of this device bundle by outpost build`)
    }
    if (opts.sync === false) throw new Error("sonic-boom's asynchronous mode (sync: false) was left out of this device bundle by outpost build: log synchronously")
    const target = opts.fd !== undefined ? opts.fd : opts.dest
    this.sync = true
    this.destroyed = false
    this.file = null
    // The rest of a line cut short by a full pipe, and how many lines were dropped since.
    this.unfinished = null
    this.dropped = 0
    if (typeof target === 'number') this.fd = target
    else if (typeof target === 'string') {
      if (opts.mkdir) fs.mkdirSync(path.dirname(target), { recursive: true })
      this.file = target
      this.fd = fs.openSync(target, opts.append === false ? 'w' : 'a', opts.mode)
    } else throw new Error('SonicBoom supports only file descriptors and files')
    process.nextTick(() => this.emit('ready'))
  }

  /** Writes `bytes`, waiting on a full pipe up to `patienceMs`: what is left of them, or null after an error (emitted). */
  _push (bytes, patienceMs) {
    let rest = bytes
    let waited = 0
    while (rest.length > 0) {
      try {
        rest = rest.subarray(fs.writeSync(this.fd, rest))
      } catch (err) {
        if (err.code !== 'EAGAIN' && err.code !== 'EBUSY') {
          this.emit('error', err)
          return null
        }
        if (waited >= patienceMs) return rest
        Atomics.wait(waitCell, 0, 0, BUSY_WAIT_MS)
        waited += BUSY_WAIT_MS
      }
    }
    return rest
  }

  /** Writes one line; false when it was dropped or failed, true when it is out (or its end will follow). */
  _line (bytes, patienceMs) {
    const rest = this._push(bytes, patienceMs)
    if (rest === null) return false
    if (rest.length === 0) return true
    // Cut short: finished before anything else. Not started: dropped.
    if (rest.length < bytes.length) {
      this.unfinished = rest
      return true
    }
    this.dropped++
    return false
  }

  write (data) {
    if (this.destroyed) throw new Error('SonicBoom destroyed')
    const line = Buffer.from(String(data), 'utf8')
    if (this.unfinished !== null) {
      const rest = this._push(this.unfinished, 0)
      if (rest === null) return false
      this.unfinished = rest.length > 0 ? rest : null
      if (this.unfinished !== null) {
        this.dropped++
        return true
      }
    }
    if (this.dropped > 0) {
      const n = this.dropped
      // Said by the device that says the line after it (a reader shows whose lines went missing).
      const device = DEVICE_FIELD.exec(String(data))
      const note = Buffer.from(`{"level":40,"time":${Date.now()},${device === null ? '' : `${device[0]},`}"msg":"${n} log line${n === 1 ? '' : 's'} dropped: the output was not read for over ${PATIENCE_MS / 1_000} s"}\n`)
      const rest = this._push(note, 0)
      if (rest === null) return false
      // Still full: the note waits, and this line is dropped too.
      if (rest.length === note.length) {
        this.dropped++
        return true
      }
      this.dropped = 0
      // The note is cut short: finished before anything else, and this line is dropped.
      if (rest.length > 0) {
        this.unfinished = rest
        this.dropped = 1
        return true
      }
      return this._line(line, 0)
    }
    return this._line(line, PATIENCE_MS)
  }

  // Every write is out when write returns: nothing waits to be flushed.
  flush (cb) {
    if (typeof cb === 'function') process.nextTick(cb)
  }

  flushSync () {
    if (this.destroyed) throw new Error('SonicBoom destroyed')
    this._finish()
  }

  /** Finishes a line cut short by a full pipe, waiting as long as for any line. */
  _finish () {
    if (this.unfinished === null) return
    const rest = this._push(this.unfinished, PATIENCE_MS)
    this.unfinished = rest !== null && rest.length > 0 ? rest : null
  }

  end () {
    if (this.destroyed) return
    this._finish()
    this.destroyed = true
    if (this.file !== null) fs.closeSync(this.fd)
    process.nextTick(() => {
      this.emit('finish')
      this.emit('close')
    })
  }

  destroy () {
    this.end()
  }
}

module.exports = SonicBoom
module.exports.SonicBoom = SonicBoom
module.exports.default = SonicBoom
