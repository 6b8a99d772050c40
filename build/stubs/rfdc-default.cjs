'use strict'
// Stands in for `rfdc/default` in device bundles (3 KB; rfdc's variants for cycles and
// prototypes are not used). MQTT.js deep-copies each outgoing publish packet with it before it
// keeps it for QoS 1 and 2. This copies as that default does: plain objects (own enumerable
// keys) and arrays (their own keys, holes left as holes) copied deeply; Dates, Maps and Sets
// made anew (the entries of Maps and Sets copied deeply); Buffers and other typed arrays copied
// byte for byte into one of the same kind; anything else (a class instance) copied as a plain
// object. test/build/device-stubs.test.ts compares it with the real one.
const { Buffer } = require('node:buffer')

function copyView(v) {
  if (v instanceof Buffer) return Buffer.from(v)
  return new v.constructor(v.buffer.slice(), v.byteOffset, v.length)
}

function copyValue(v) {
  if (typeof v !== 'object' || v === null) return v
  const made = v.constructor
  if (made !== Object) {
    if (made === Date) return new Date(v)
    if (made === Map) return new Map(copyArray(Array.from(v)))
    if (made === Set) return new Set(copyArray(Array.from(v)))
  }
  if (ArrayBuffer.isView(v)) return copyView(v)
  return Array.isArray(v) ? copyArray(v) : copyObject(v)
}

function copyArray(a) {
  const keys = Object.keys(a)
  const out = new Array(keys.length)
  for (const k of keys) out[k] = copyValue(a[k])
  return out
}

function copyObject(o) {
  const out = {}
  for (const k in o) if (Object.hasOwnProperty.call(o, k)) out[k] = copyValue(o[k])
  return out
}

module.exports = function clone(o) {
  if (typeof o !== 'object' || o === null) return o
  if (Array.isArray(o)) return copyArray(o)
  const made = o.constructor
  if (made === Date) return new Date(o)
  if (made === Map) return new Map(copyArray(Array.from(o)))
  if (made === Set) return new Set(copyArray(Array.from(o)))
  return copyObject(o)
}
