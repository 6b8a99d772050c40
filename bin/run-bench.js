#!/usr/bin/env node
// Installs the comparison systems (test/bench/package.json) on first use, builds the bench to
// plain JavaScript, then runs it from the repository root.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { buildBench } from '../test/bench/build.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const benchDir = `${root}test/bench`
const baselines = ['moleculer', '@purista/core', 'plainjob', 'bullmq', 'ioredis']
if (baselines.some((p) => !existsSync(`${benchDir}/node_modules/${p}`))) {
  console.error('bench: installing comparison systems into test/bench (first run only)')
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: benchDir, stdio: ['ignore', 'ignore', 'inherit'] })
  if (r.status !== 0) process.exit(r.status ?? 1)
}
await buildBench(root)
const r = spawnSync(process.execPath, ['--enable-source-maps', 'test/bench/.build/bench.js', ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' })
process.exit(r.status ?? 1)
