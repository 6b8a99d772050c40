'use strict'
// Stands in for the parts of pino a device never runs: transports (pino/lib/transport.js and its
// worker threads, `thread-stream`), pino.multistream and the `redact` option (`@pinojs/redact`).
// The runtime's logger writes JSON lines to stdout through pino's own destination and uses none
// of them; calling one says what happened instead of failing somewhere inside.
module.exports = function leftOut() {
  throw new Error("pino transports, multistream and redact were left out of this device bundle by outpost build; a device logs JSON lines to stdout")
}
