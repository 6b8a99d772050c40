// The SQL of the SQLite stores as a device bundle carries it (build/compact-sql.ts): one line,
// single spaces, quoted strings as written, every source line kept in its place; and the schema
// the compacted migrations make is the schema the sources make.
import { writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import Database from 'better-sqlite3'
import { build } from 'esbuild'
import { describe, expect, it } from 'vitest'
import { compactSql, compactSqlPlugin } from '../../build/compact-sql.js'
import { PROJECT_ROOT } from '../../build/project-root.js'
import { MIGRATIONS, type Migration } from '../../runtime/stores/sqlite/migrations.js'
import { tempDirs } from './build-helpers.js'

const temp = tempDirs('compact-sql')

describe('compactSql', () => {
  it('makes an SQL template one line of single spaces, keeps quoted strings, and puts the line breaks after it', () => {
    const source = [
      'const a = db.prepare(`',
      '  SELECT id,   state',
      "    FROM jobs WHERE state = 'two  spaces' AND note = 'it''s  here'",
      '`).all()',
      'const b = `not   SQL`',
    ].join('\n')
    const out = compactSql(source)
    expect(out.split('\n')).toHaveLength(source.split('\n').length)
    expect(out).toContain("db.prepare(`SELECT id, state FROM jobs WHERE state = 'two  spaces' AND note = 'it''s  here'`\n\n\n).all()")
    expect(out).toContain('const b = `not   SQL`')
  })

  it('leaves alone a statement with an SQL comment, and one with an expression inside', () => {
    const commented = 'db.exec(`\n  CREATE TABLE t (a INTEGER) -- the  only column\n`)'
    expect(compactSql(commented)).toBe(commented)
    const block = 'db.exec(`\n  SELECT 1 /* one  */\n`)'
    expect(compactSql(block)).toBe(block)
    const expression = 'db.exec(`\n  SELECT ${[1, 2].join(",   ")}\n`)'
    expect(compactSql(expression)).toBe(expression)
  })

  it('the migrations, compacted as in a bundle, make the same schema as the sources', async () => {
    const entry = path.join(PROJECT_ROOT, 'runtime', 'stores', 'sqlite', 'migrations.ts')
    const out = path.join(temp(), 'migrations.cjs')
    const result = await build({ entryPoints: [entry], bundle: true, platform: 'node', format: 'cjs', write: false, external: ['better-sqlite3'], plugins: [compactSqlPlugin()], logLevel: 'silent', outfile: out })
    const text = result.outputFiles[0]!.text
    writeFileSync(out, text)
    const compacted = (createRequire(import.meta.url)(out) as { MIGRATIONS: readonly Migration[] }).MIGRATIONS
    // The bundle's SQL has no indented line left.
    expect(text).not.toMatch(/\n {4,}(CREATE|ALTER|INSERT|SELECT)/)
    const schema = (migrations: readonly Migration[], compact: boolean): { name: string; sql: string }[] => {
      const db = new Database(':memory:')
      try {
        for (const m of migrations) m.up(db)
        const rows = db.prepare('SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name').all() as { name: string; sql: string }[]
        // The sources' text, with its spaces made single, is the bundle's.
        return rows.map((r) => ({ name: r.name, sql: compact ? r.sql : r.sql.replace(/\s+/g, ' ').replace(/\( /g, '(').trim() }))
      } finally {
        db.close()
      }
    }
    const fromSources = schema(MIGRATIONS, false)
    expect(fromSources.length).toBeGreaterThan(5)
    expect(compacted).toHaveLength(MIGRATIONS.length)
    const fromBundle = schema(compacted, true)
    expect(fromBundle.map((r) => r.name)).toEqual(fromSources.map((r) => r.name))
    for (const [i, r] of fromBundle.entries()) expect(r.sql.replace(/\( /g, '('), r.name).toBe(fromSources[i]!.sql)
  })
})
