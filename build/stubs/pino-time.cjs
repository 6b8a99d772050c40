'use strict'
// Stands in for pino/lib/time.js (pino.stdTimeFunctions) in device bundles: the same functions
// but isoTimeNano, which the runtime's logger does not use (its lines carry pino's default epoch
// time) and which reads the monotonic clock as the module loads. Called, it says it was left out.
const nullTime = () => ''
const epochTime = () => `,"time":${Date.now()}`
const unixTime = () => `,"time":${Math.round(Date.now() / 1000.0)}`
const isoTime = () => `,"time":"${new Date(Date.now()).toISOString()}"`
const isoTimeNano = () => {
  throw new Error('pino.stdTimeFunctions.isoTimeNano was left out of this device bundle by outpost build; a device logs epoch or ISO times')
}

module.exports = { nullTime, epochTime, unixTime, isoTime, isoTimeNano }
