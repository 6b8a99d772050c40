// The SQL of the runtime's SQLite stores is written over several indented lines, with columns
// lined up: readable in the sources, and 1.5 KB of spaces in every bundle that has the stores. A
// device bundle carries it on one line, its runs of spaces made one: SQLite reads the same
// statements (spaces between tokens mean nothing to it; quoted strings are kept as written).
import type { Plugin } from 'esbuild'
import { readFile } from 'node:fs/promises'

/** A template literal that starts with an SQL statement and has no backtick inside. */
const SQL_TEMPLATE = /`(\s*(?:SELECT|INSERT|UPDATE|DELETE|CREATE|WITH|PRAGMA|BEGIN|ALTER|DROP|REPLACE)\b[^`]*)`/g

/**
 * `source` (TypeScript) with the whitespace of its SQL template literals made single spaces,
 * outside the SQL's quoted strings. A statement with an SQL comment (a line comment ends at its
 * line) or with an expression inside (`${…}`) is left as it is. The line breaks taken out are put after the literal's closing
 * backtick, so every line of the source keeps its number (stack traces and the source map).
 */
export function compactSql(source: string): string {
  return source.replace(SQL_TEMPLATE, (whole: string, sql: string) => {
    // A comment, or JavaScript inside (`${…}`, whose strings are not SQL's): left as written.
    if (sql.includes('--') || sql.includes('/*') || sql.includes('${')) return whole
    // Odd parts are quoted strings ('…', with '' inside one as two adjacent quoted parts): kept.
    const compact = sql
      .split(/('[^']*')/)
      .map((part, i) => (i % 2 === 1 ? part : part.replace(/\s+/g, ' ')))
      .join('')
      .trim()
    const breaks = sql.split('\n').length - compact.split('\n').length
    return `\`${compact}\`${'\n'.repeat(breaks)}`
  })
}

/** The esbuild plugin: compactSql over the runtime's SQLite stores (runtime/stores/sqlite/*.ts). */
export function compactSqlPlugin(): Plugin {
  return {
    name: 'outpost-compact-sql',
    setup(build) {
      build.onLoad({ filter: /[\\/]runtime[\\/]stores[\\/]sqlite[\\/][^\\/]+\.ts$/ }, async (args) => ({ contents: compactSql(await readFile(args.path, 'utf8')), loader: 'ts' }))
    },
  }
}
