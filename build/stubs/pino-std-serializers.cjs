'use strict'
// Stands in for pino-std-serializers in device bundles. pino takes its error serializer from the
// package (the default for `err`) and hands the whole set on as pino.stdSerializers; the runtime's
// logger uses only the error serializers. Those are the package's own files; the serializers of
// HTTP requests and responses (a device serves none) are left out and say so when called.
const err = require('pino-std-serializers/lib/err.js')
const errWithCause = require('pino-std-serializers/lib/err-with-cause.js')

const leftOut = () => {
  throw new Error('the HTTP request and response serializers of pino were left out of this device bundle by outpost build; a device logs errors with err and errWithCause')
}

module.exports = {
  err,
  errWithCause,
  mapHttpRequest: leftOut,
  mapHttpResponse: leftOut,
  req: leftOut,
  res: leftOut,
  wrapErrorSerializer: (custom) => (custom === err ? custom : (e) => custom(err(e))),
  wrapRequestSerializer: leftOut,
  wrapResponseSerializer: leftOut,
}
