#!/usr/bin/env node
// The outpost command: runs the compiled CLI (dist/bin/cli.js), never TypeScript. In a checkout,
// JavaScript older than the sources is rebuilt first (bin/build.js, under a second, silently);
// a dist/ that is missing and cannot be built is one line on stderr and exit code 1.
import { ensureDist } from './build.js'

const problem = await ensureDist()
if (problem !== undefined) {
  console.error(`outpost: ${problem}`)
  process.exit(1)
}
await import('../dist/bin/cli.js')
