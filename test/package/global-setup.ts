// Builds dist/'s JavaScript before any test runs when it is missing or older than the sources,
// so that the tests which start the CLI (bin/outpost.js runs dist/) run the current code. Under
// a second; nothing happens when dist/ is current.
import { spawnSync } from 'node:child_process'

/** Vitest's global setup: `node bin/build.js --js`, which builds only when dist/ is stale. */
export default function setup(): void {
  const r = spawnSync(process.execPath, ['bin/build.js', '--js'], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`dist/ could not be built for the tests:\n${r.stderr}`)
}
