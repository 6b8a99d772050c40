'use strict'
// Stands in for MQTT.js's handler of AUTH packets (mqtt/build/lib/handlers/auth.js) in device
// bundles. AUTH is MQTT 5's enhanced authentication, which only a client that sent an
// Authentication Method in its CONNECT takes part in. The runtime's MQTT bridge never sends one, so
// to a device every AUTH packet is a protocol error, and this answers it as MQTT.js's handler
// answers it for such a client: the parsed packets behind it dropped, the connection closed, an
// error with reason code 130 (protocol error) emitted. A client that did ask for enhanced
// authentication (not one the runtime makes) is told that it was left out of the bundle.
Object.defineProperty(exports, '__esModule', { value: true })
const { ErrorWithReasonCode } = require('mqtt/lib/shared')

const PROTOCOL_ERROR = 130

exports.default = function handleAuth(client, _packet, pump) {
  const version = client.options.protocolVersion
  const message =
    version !== 5
      ? `Protocol error: Auth packets are only supported in MQTT 5. Your version:${version}`
      : client._authenticationMethod
        ? 'MQTT 5 enhanced authentication was left out of this device bundle by outpost build'
        : 'Protocol error: Auth packet received but enhanced authentication was not requested'
  client.log('handleAuth :: %s', message)
  pump?.discardParsedPackets()
  if (!pump || pump.isCurrent()) client._cleanUp(true)
  client.emit('error', new ErrorWithReasonCode(message, PROTOCOL_ERROR))
}
