import { describe, expect, it } from 'vitest'
import { checkLayers, findImports, formatViolation, readSources, REPO_ROOT, type SourceFile } from './layers-check.js'

// Layers point inward (issue 12): see test/layers-check.ts for the rules.
describe('layers', () => {
  it('every import in runtime/, gateway/, devices/, build/, bin/ and examples/ points inward', () => {
    const files = readSources(REPO_ROOT)
    // The check reads the real tree: hundreds of files, and a runtime that imports itself.
    expect(files.length).toBeGreaterThan(100)
    expect(files.some((f) => f.path === 'runtime/contract/contract.ts')).toBe(true)
    expect(files.reduce((n, f) => n + findImports(f).length, 0)).toBeGreaterThan(300)
    expect(checkLayers(files).map(formatViolation)).toEqual([])
  })
})

describe('the layer check itself', () => {
  const file = (path: string, text: string): SourceFile => ({ path, text })
  const rulesBroken = (...files: SourceFile[]): string[] => checkLayers(files).map((v) => `${v.file} → ${v.specifier}`)

  it('finds static, type-only, re-exported and dynamic imports, and nothing in comments or strings', () => {
    const found = findImports(file('runtime/x.ts', [
      "import { a } from './a.js'",
      "import type { B } from './b.js'",
      "import { type C, type D } from './c.js'",
      "import { type E, f } from './e.js'",
      "export { g } from './g.js'",
      "export type { H } from './h.js'",
      "export * from './star.js'",
      "import './side-effect.js'",
      "const later = await import('./dynamic.js')",
      "type T = import('./type-query.js').T",
      "// import { no } from './comment.js'",
      "const s = \"import { no } from './string.js'\"",
    ].join('\n')))
    expect(found).toEqual([
      { specifier: './a.js', typeOnly: false, dynamic: false },
      { specifier: './b.js', typeOnly: true, dynamic: false },
      { specifier: './c.js', typeOnly: true, dynamic: false },
      { specifier: './e.js', typeOnly: false, dynamic: false },
      { specifier: './g.js', typeOnly: false, dynamic: false },
      { specifier: './h.js', typeOnly: true, dynamic: false },
      { specifier: './star.js', typeOnly: false, dynamic: false },
      { specifier: './side-effect.js', typeOnly: false, dynamic: false },
      { specifier: './dynamic.js', typeOnly: false, dynamic: true },
      { specifier: './type-query.js', typeOnly: true, dynamic: false },
    ])
  })

  it('reports each kind of import against the direction, naming the file and the import', () => {
    expect(rulesBroken(
      file('runtime/contract/bad.ts', "import type { Envelope } from '../wire/envelope.js'"),
      file('runtime/contract/pkg.ts', "import { pino } from 'pino'\nimport mqtt from 'mqtt'"),
      file('runtime/wire/bad.ts', "import { createRuntime } from '../service/runtime.js'"),
      file('runtime/errors.ts', "import type { Clock } from './ports/clock.js'"),
      file('runtime/leaf.ts', "import { defineContract } from './contract/contract.js'"),
      file('runtime/ports/bad.ts', "import { systemClock } from './clock.js'\nimport type { Job } from '../stores/memory/memory-queue-store.js'"),
      file('runtime/stores/memory/bad.ts', "import { x } from '../../service/runtime-core.js'\nconst q = await import('../../queue/queue-runner.js')"),
      file('runtime/bridges/bad.ts', "export { m } from '../messaging/messenger.js'"),
      file('runtime/service/bad.ts', "import { broker } from '../../gateway/gateway.js'\nimport type { T } from '../../test/helpers/aedes.js'"),
      file('gateway/bad.ts', "import { Encoder } from 'cbor-x'"),
      file('runtime/stores/sqlite/bad.ts', "import { Decoder } from 'cbor-x'"),
      file('runtime/service/adapters.ts', "import { createMqttBridge } from '../bridges/mqtt/mqtt-bridge.js'\nimport { openDeviceDatabase } from '../stores/sqlite/device-database.js'"),
      file('runtime/messaging/libs.ts', "import mqtt from 'mqtt'\nimport Database from 'better-sqlite3'"),
    )).toEqual([
      'runtime/contract/bad.ts → ../wire/envelope.js',
      'runtime/contract/pkg.ts → pino',
      'runtime/contract/pkg.ts → mqtt', // a package contracts never import
      'runtime/contract/pkg.ts → mqtt', // and a library only its adapter imports
      'runtime/wire/bad.ts → ../service/runtime.js',
      'runtime/errors.ts → ./ports/clock.js',
      'runtime/leaf.ts → ./contract/contract.js',
      'runtime/ports/bad.ts → ./clock.js',
      'runtime/ports/bad.ts → ../stores/memory/memory-queue-store.js',
      'runtime/stores/memory/bad.ts → ../../service/runtime-core.js',
      'runtime/stores/memory/bad.ts → ../../queue/queue-runner.js',
      'runtime/bridges/bad.ts → ../messaging/messenger.js',
      'runtime/service/bad.ts → ../../gateway/gateway.js',
      'runtime/service/bad.ts → ../../test/helpers/aedes.js',
      'gateway/bad.ts → cbor-x',
      'runtime/stores/sqlite/bad.ts → cbor-x',
      'runtime/service/adapters.ts → ../bridges/mqtt/mqtt-bridge.js',
      'runtime/service/adapters.ts → ../stores/sqlite/device-database.js',
      'runtime/messaging/libs.ts → mqtt',
      'runtime/messaging/libs.ts → better-sqlite3',
    ])
  })

  it('lets imports that point inward through', () => {
    expect(rulesBroken(
      file('runtime/errors.ts', ''),
      file('runtime/logger.ts', "import { pino } from 'pino'\nimport { OutpostError } from './errors.js'\nimport { formatLogLine } from './log-line.js'"),
      file('runtime/contract/ok.ts', "import * as v from 'valibot'\nimport type { Logger } from 'pino'\nimport { Cron } from 'croner'\nimport { assertTopicSegment } from '../topic-level.js'\nimport type { Schema } from './schema.js'"),
      file('runtime/wire/ok.ts', "import { Encoder } from 'cbor-x'\nimport { ErrorCode } from '../errors.js'\nimport { isTopicSegment } from '../topic-level.js'"),
      file('runtime/ports/ok.ts', "import type { Envelope } from '../wire/envelope.js'\nimport type { Schema } from '../contract/schema.js'\nimport type { OutpostError } from '../errors.js'"),
      file('runtime/stores/ok.ts', "import type { Inbox } from '../ports/inbox.js'\nimport { createValueCodec } from '../wire/value-codec.js'\nimport { createRecentMap } from '../recent-map.js'"),
      file('runtime/service/ok.ts', "import { createMemoryInbox } from '../stores/memory/memory-inbox.js'\nimport { createServiceQueues } from '../queue/service-queues.js'"),
      file('runtime/bridges/mqtt/ok.ts', "import * as clientModule from 'mqtt/lib/client'"),
      file('runtime/stores/sqlite/ok.ts', "import Database from 'better-sqlite3'"),
      file('devices/ok.ts', "import Database from 'better-sqlite3'"),
      file('runtime/index.ts', "export * from './service/runtime.js'"),
      file('gateway/ok.ts', "import { createRuntime } from '../runtime/index.js'"),
    )).toEqual([])
  })
})
