#!/usr/bin/env node
// Summarises V8 CPU profiles (`npm run bench -- --cpu-prof DIR …`, or node --cpu-prof): the
// functions with the most self time and the most total time, and self time per source file.
// Frames of the built bench (test/bench/.build) are mapped back to their TypeScript source
// through the build's source maps, so a row names runtime/…/file.ts:line, not the bundle.
//
//   node test/bench/profile-top.js DIR/drain-outpost-123.cpuprofile [more.cpuprofile …] [--top 25] [--callers run,all]
//
// Several files are added together (e.g. the profiles of all rounds of one system). `--callers`
// splits the self time of the named functions (e.g. better-sqlite3's native `run` and `all`)
// by the JavaScript function that called them.
import { readFileSync, existsSync } from 'node:fs'
import { SourceMap } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const args = process.argv.slice(2)
const topAt = args.indexOf('--top')
const top = topAt >= 0 ? Number(args[topAt + 1]) : 25
const callersAt = args.indexOf('--callers')
const callersOf = new Set(callersAt >= 0 ? args[callersAt + 1].split(',') : [])
const files = args.filter((a) => a.endsWith('.cpuprofile'))
if (files.length === 0) {
  console.error('usage: node test/bench/profile-top.js FILE.cpuprofile [FILE …] [--top N]')
  process.exit(2)
}

const maps = new Map()
/** The source map of a built file, or null. */
function mapOf(url) {
  if (!maps.has(url)) {
    let map = null
    try {
      const file = url.startsWith('file://') ? fileURLToPath(url) : url
      if (existsSync(`${file}.map`)) map = new SourceMap(JSON.parse(readFileSync(`${file}.map`, 'utf8')))
    } catch {
      map = null
    }
    maps.set(url, map)
  }
  return maps.get(url)
}

const cwd = process.cwd()
/** Where a frame's code is: its TypeScript source where a map says so, relative to the repository. */
function place(frame) {
  const { url, lineNumber, columnNumber } = frame
  if (url === '') return ''
  const map = mapOf(url)
  if (map !== null && lineNumber >= 0) {
    const e = map.findEntry(lineNumber, columnNumber)
    if (e && e.originalSource) {
      const src = e.originalSource.startsWith('file://') ? fileURLToPath(e.originalSource) : path.resolve(path.dirname(fileURLToPath(url)), e.originalSource)
      return `${path.relative(cwd, src)}:${e.originalLine + 1}`
    }
  }
  const file = url.startsWith('file://') ? path.relative(cwd, fileURLToPath(url)) : url
  return `${file}:${lineNumber + 1}`
}

const self = new Map() // key → µs
const total = new Map()
const byFile = new Map()
const callers = new Map()
let all = 0
for (const f of files) {
  const prof = JSON.parse(readFileSync(f, 'utf8'))
  const byId = new Map(prof.nodes.map((n) => [n.id, n]))
  const parent = new Map()
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const keyOf = new Map()
  const key = (id) => {
    if (!keyOf.has(id)) {
      const fr = byId.get(id).callFrame
      const where = place(fr)
      keyOf.set(id, { name: fr.functionName, fn: `${fr.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`, file: where ? where.replace(/:\d+$/, '') : fr.functionName })
    }
    return keyOf.get(id)
  }
  const { samples, timeDeltas } = prof
  for (let i = 0; i < samples.length; i++) {
    const us = timeDeltas[i + 1] ?? 0 // a sample lasts until the next one
    all += us
    const k = key(samples[i])
    self.set(k.fn, (self.get(k.fn) ?? 0) + us)
    byFile.set(k.file, (byFile.get(k.file) ?? 0) + us)
    if (callersOf.has(k.name)) {
      const up = parent.get(samples[i])
      const by = `${k.name} ← ${up === undefined ? '(root)' : key(up).fn}`
      callers.set(by, (callers.get(by) ?? 0) + us)
    }
    const seen = new Set()
    for (let id = samples[i]; id !== undefined; id = parent.get(id)) {
      const fn = key(id).fn
      if (seen.has(fn)) continue
      seen.add(fn)
      total.set(fn, (total.get(fn) ?? 0) + us)
    }
  }
}

const pct = (us) => `${((us / all) * 100).toFixed(1).padStart(5)} %`
const ms = (us) => `${(us / 1000).toFixed(0).padStart(7)} ms`
const show = (title, m, n) => {
  console.log(`\n${title}`)
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${ms(us)} ${pct(us)}  ${k}`)
}
console.log(`${files.length} profile(s), ${(all / 1000).toFixed(0)} ms sampled`)
show('self time by function', self, top)
show('self time by file', byFile, top)
show('total time (self + callees) by function', total, top)
if (callersOf.size > 0) show(`self time of ${[...callersOf].join(', ')} by caller`, callers, top)
