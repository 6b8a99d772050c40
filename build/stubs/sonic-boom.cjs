'use strict'
// Stands in for sonic-boom (pino's destination) in device bundles. The runtime's logger does not
// use it (runtime/logger.ts writes with runtime/log-writer.ts); a device's own pino() or
// pino.destination() does. What is kept is what a device needs: each line written whole, at
// once, synchronously, by the runtime's line writer: a full pipe is waited on for a second at
// most (sonic-boom's synchronous mode waits for ever), then lines are dropped and counted, none
// torn. Failures other than a full pipe are emitted as 'error' (pino turns the stream off on EPIPE).
//
// Asynchronous buffering (sync: false), minLength, maxLength, periodic flushes, reopen and fsync
// are sonic-boom's and not here: asking for them throws, saying so. pino() and
// pino.destination(fd) name no mode and get this synchronous writer.
const fs = require('node:fs')
const path = require('node:path')
const { EventEmitter } = require('node:events')

const { createLineWriter } = require('../../runtime/log-writer.ts')

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
    if (typeof target === 'number') this.fd = target
    else if (typeof target === 'string') {
      if (opts.mkdir) fs.mkdirSync(path.dirname(target), { recursive: true })
      this.file = target
      this.fd = fs.openSync(target, opts.append === false ? 'w' : 'a', opts.mode)
    } else throw new Error('SonicBoom supports only file descriptors and files')
    this.lines = createLineWriter(this.fd, (err) => this.emit('error', err))
    process.nextTick(() => this.emit('ready'))
  }

  write (data) {
    if (this.destroyed) throw new Error('SonicBoom destroyed')
    return this.lines.write(String(data))
  }

  // Every write is out when write returns: nothing waits to be flushed.
  flush (cb) {
    if (typeof cb === 'function') process.nextTick(cb)
  }

  flushSync () {
    if (this.destroyed) throw new Error('SonicBoom destroyed')
    this.lines.finish()
  }

  end () {
    if (this.destroyed) return
    this.lines.finish()
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
