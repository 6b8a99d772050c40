// Runs aedes-persistence's abstract suite (written for node:test) against the SQLite broker
// persistence, each test on a new file in a temporary folder. Started by
// persistence-abstract.test.ts: `node --import tsx --test --test-reporter=tap <this file>`.
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, test } from 'node:test'
import { createSqlitePersistence } from '../../gateway/persistence/sqlite-persistence.js'

const require = createRequire(import.meta.url)
const abstract = require('aedes-persistence/abstract.js') as (opts: object) => void

const dir = mkdtempSync(path.join(tmpdir(), 'outpost-broker-abstract-'))
after(() => rmSync(dir, { recursive: true, force: true }))
let n = 0

abstract({
  test,
  persistence: () => createSqlitePersistence({ path: path.join(dir, `broker-${++n}.db`) }),
  testAsync: true,
})
