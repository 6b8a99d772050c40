'use strict'
// Stands in for modules a device bundle leaves out because the device never reaches them: MQTT.js's
// WebSocket transport (`ws`) and SOCKS proxy support (`socks`). Importing one is harmless; using
// one says what happened instead of failing somewhere inside.
function leftOut() {
  throw new Error('this module was left out of the device bundle by outpost build (WebSocket and SOCKS transports are not supported on devices)')
}
module.exports = leftOut
module.exports.WebSocket = leftOut
module.exports.WebSocketServer = leftOut
module.exports.createWebSocketStream = leftOut
module.exports.SocksClient = leftOut
