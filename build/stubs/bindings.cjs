'use strict'
// Stands in for `bindings` in device bundles (required by better-sqlite3/lib/database.js). It is
// called only when no `nativeBinding` is given; the bundle's better-sqlite3 (better-sqlite3.ts
// beside this file) always gives the addon that lies beside the bundle, so reaching this is a bug.
module.exports = function bindings(name) {
  throw new Error(`${name}: native addons are loaded from beside the device bundle, not through bindings (left out by outpost build)`)
}
