'use strict'
// Stands in for an optional native accelerator a device bundle leaves out (cbor-x's `cbor-extract`):
// requiring it fails as a missing module does, and its user falls back to JavaScript. The bundle
// never picks up a copy from some node_modules it happens to run beside.
throw Object.assign(new Error('this optional native module was left out of the device bundle by outpost build'), { code: 'MODULE_NOT_FOUND' })
