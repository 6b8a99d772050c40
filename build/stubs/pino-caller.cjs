'use strict'
// Stands in for pino/lib/caller.js in device bundles. pino asks for the files on its call stack at
// every pino() call (an Error and its stack each time) only to resolve a transport's relative
// target; transports are left out of device bundles (pino-left-out.cjs), so there is none to resolve.
module.exports = function getCallers() {
  return []
}
