'use strict'
// Stands in for the methods of better-sqlite3's Database that the runtime's SQLite stores never
// call: user-defined functions and aggregates, virtual tables, online backups and serialize
// (better-sqlite3/lib/methods/{function,aggregate,table,backup,serialize}.js, 8 KB). The stores
// prepare statements, run transactions and pragmas; calling one of these on a device says what
// happened instead of failing somewhere inside.
module.exports = function leftOut() {
  throw new Error('better-sqlite3 functions, aggregates, virtual tables, backup and serialize were left out of this device bundle by outpost build')
}
