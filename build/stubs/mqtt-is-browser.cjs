'use strict'
// Stands in for MQTT.js's browser detection (mqtt/build/lib/is-browser.js) in device bundles. A
// bundle runs under Node, which has no `window`, no worker `self` and no React Native
// `navigator.product`: each answer is what the detection gives there, false.
Object.defineProperty(exports, '__esModule', { value: true })
exports.default = false
exports.isWebWorker = false
exports.isReactNativeBrowser = false
