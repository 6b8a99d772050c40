'use strict'
// Stands in for sonic-boom (pino's destination) in device bundles. A device writes its log lines
// synchronously to one file descriptor (runtime/logger.ts asks pino.destination for fd 1, sync),
// so what is kept is that: each line written whole, at once, with fs.writeSync. A pipe that is
// full (EAGAIN, EBUSY) is waited on and tried again, as sonic-boom does in sync mode; any other
// failure is emitted as 'error' (pino turns the stream off on EPIPE, and so does the runtime's
// logger for every error). Asynchronous buffering, minLength, maxLength, periodic flushes, reopen
// and fsync are sonic-boom's and not here: asking for them says so.
const fs = require('node:fs')
const path = require('node:path')
const { EventEmitter } = require('node:events')

const BUSY_WAIT_MS = 100
const waitCell = new Int32Array(new SharedArrayBuffer(4))
const UNSUPPORTED = ['minLength', 'maxLength', 'periodicFlush', 'fsync', 'contentMode']

class SonicBoom extends EventEmitter {
  constructor (opts = {}) {
    super()
    for (const k of UNSUPPORTED) {
      if (opts[k]) throw new Error(`sonic-boom's ${k} was left out of this device bundle by outpost build`)
    }
    const target = opts.fd !== undefined ? opts.fd : opts.dest
    this.sync = true
    this.destroyed = false
    this.file = null
    if (typeof target === 'number') this.fd = target
    else if (typeof target === 'string') {
      if (opts.mkdir) fs.mkdirSync(path.dirname(target), { recursive: true })
      this.file = target
      this.fd = fs.openSync(target, opts.append === false ? 'w' : 'a', opts.mode)
    } else throw new Error('SonicBoom supports only file descriptors and files')
    process.nextTick(() => this.emit('ready'))
  }

  write (data) {
    if (this.destroyed) throw new Error('SonicBoom destroyed')
    let rest = Buffer.from(String(data), 'utf8')
    while (rest.length > 0) {
      try {
        rest = rest.subarray(fs.writeSync(this.fd, rest))
      } catch (err) {
        if (err.code === 'EAGAIN' || err.code === 'EBUSY') Atomics.wait(waitCell, 0, 0, BUSY_WAIT_MS)
        else {
          this.emit('error', err)
          return false
        }
      }
    }
    return true
  }

  // Every write is out when write returns: nothing waits to be flushed.
  flush (cb) {
    if (typeof cb === 'function') process.nextTick(cb)
  }

  flushSync () {
    if (this.destroyed) throw new Error('SonicBoom destroyed')
  }

  end () {
    if (this.destroyed) return
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
