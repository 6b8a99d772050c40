'use strict'
// Stands in for mqtt-packet's `generate` (a packet as one Buffer) in device bundles: MQTT.js
// writes packets with mqtt-packet's writeToStream and never calls it. Calling it says what
// happened instead of failing somewhere inside.
module.exports = function generate() {
  throw new Error("mqtt-packet's generate was left out of this device bundle by outpost build (MQTT.js writes packets with writeToStream)")
}
