'use strict'
// Stands in for `debug` (9 KB with `ms`) in device bundles, for MQTT.js and mqtt-packet's trace
// lines: the same DEBUG variable (`DEBUG=mqttjs*`, comma- or space-separated, `*` for any text,
// `-name` to leave one out), lines on stderr as `debug` writes them when not on a terminal.
const { format } = require('node:util')

const patterns = (process.env.DEBUG || '').split(/[\s,]+/).filter(Boolean)
const toRegExp = (p) => new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*?')}$`)
const wanted = patterns.filter((p) => !p.startsWith('-')).map(toRegExp)
const skipped = patterns.filter((p) => p.startsWith('-')).map((p) => toRegExp(p.slice(1)))

function createDebug(namespace) {
  const enabled = !skipped.some((r) => r.test(namespace)) && wanted.some((r) => r.test(namespace))
  const log = (...args) => {
    if (enabled) process.stderr.write(`${new Date().toISOString()} ${namespace} ${format(...args)}\n`)
  }
  log.enabled = enabled
  log.namespace = namespace
  log.extend = (sub, delimiter = ':') => createDebug(`${namespace}${delimiter}${sub}`)
  return log
}
createDebug.enabled = (namespace) => createDebug(namespace).enabled
module.exports = createDebug
