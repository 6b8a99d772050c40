// Stands in for `worker-timers` in device bundles. MQTT.js runs its keepalive on worker timers
// only in a browser (mqtt/build/lib/get-timer.js, variant 'auto'); under Node it uses the
// global timers, which is all this module gives.
export const setInterval = globalThis.setInterval
export const clearInterval = globalThis.clearInterval
export const setTimeout = globalThis.setTimeout
export const clearTimeout = globalThis.clearTimeout
