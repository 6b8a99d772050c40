// Stands in for `node:module` in device bundles. Node's public module is not in its startup
// snapshot: requiring it compiled it and its internals at every start (0.3-0.5 ms of the thermo's,
// measured here), while a device calls createRequire only after it is ready (node:crypto for OTA)
// or never (cbor-x's native decoder, absent from bundles; built-in modules on Node before 20.16).
// createRequire is the only name the bundled code imports from it (an import of another name from
// an ES module fails the build); the real one is loaded at its first call.
type NodeModule = typeof import('node:module')

let real: NodeModule | undefined

/** Node's createRequire, loading node:module at the first call. */
export function createRequire(from: string | URL): NodeJS.Require {
  // A device bundle is CommonJS (or an ES module with a require of its own): `require` is there.
  real ??= require('node:module') as NodeModule
  return real.createRequire(from)
}
