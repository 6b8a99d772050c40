'use strict'
// Stands in for MQTT.js's timer choice (mqtt/build/lib/get-timer.js) in device bundles: its
// keepalive runs on Node's global setInterval, as under Node it does for `auto` and `native`;
// `worker` named worker-timers, which a device bundle already swaps for the global timers
// (worker-timers.ts beside this file).
Object.defineProperty(exports, '__esModule', { value: true })
const nativeTimer = {
  set: (func, time) => setInterval(func, time),
  clear: (timerId) => clearInterval(timerId),
}
exports.default = () => nativeTimer
