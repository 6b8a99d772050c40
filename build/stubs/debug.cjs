'use strict'
// Stands in for `debug` (9 KB with `ms`) in device bundles, for MQTT.js and mqtt-packet's trace
// lines: the same DEBUG variable (`DEBUG=mqttjs*`, comma- or space-separated, `*` for any text,
// `-name` to leave one out), lines on stderr as `debug` writes them when not on a terminal.
const { format, inspect } = require('node:util')

const patterns = (process.env.DEBUG || '').split(/[\s,]+/).filter(Boolean)
const toRegExp = (p) => new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*?')}$`)
const wanted = patterns.filter((p) => !p.startsWith('-')).map(toRegExp)
const skipped = patterns.filter((p) => p.startsWith('-')).map((p) => toRegExp(p.slice(1)))

// debug's own formatters: %o on one line (each line of util.inspect trimmed), %O as inspect has it;
// the rest as util.format reads them.
const oneLine = (v) => inspect(v).split('\n').map((l) => l.trim()).join(' ')
function text(args) {
  if (typeof args[0] !== 'string') return format(...args)
  const rest = args.slice(1)
  let at = 0
  const head = args[0].replace(/%([a-zA-Z%])/g, (whole, f) => {
    if (f === '%' || at >= rest.length) return whole
    if (f !== 'o' && f !== 'O') {
      at++
      return whole
    }
    const [v] = rest.splice(at, 1)
    return (f === 'o' ? oneLine(v) : inspect(v)).replace(/%/g, '%%')
  })
  return format(head, ...rest)
}

function createDebug(namespace) {
  const enabled = !skipped.some((r) => r.test(namespace)) && wanted.some((r) => r.test(namespace))
  const log = (...args) => {
    if (enabled) process.stderr.write(`${new Date().toISOString()} ${namespace} ${text(args)}\n`)
  }
  log.enabled = enabled
  log.namespace = namespace
  log.extend = (sub, delimiter = ':') => createDebug(`${namespace}${delimiter}${sub}`)
  return log
}
createDebug.enabled = (namespace) => createDebug(namespace).enabled
module.exports = createDebug
