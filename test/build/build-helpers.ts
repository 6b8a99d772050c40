// Shared by the build tests: temporary folders outside the repository, removed after the file.
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll } from 'vitest'

/** A fresh folder under the system's temp folder, removed after this test file. */
export function tempDirs(prefix: string): () => string {
  const made: string[] = []
  afterAll(() => {
    for (const d of made) rmSync(d, { recursive: true, force: true })
  })
  return () => {
    const d = mkdtempSync(path.join(tmpdir(), `outpost-${prefix}-`))
    made.push(d)
    return d
  }
}

/** Every node_modules folder a module in `dir` could resolve a package from (none, for a bundle to prove anything). */
export function nodeModulesAbove(dir: string): string[] {
  const found: string[] = []
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    if (existsSync(path.join(d, 'node_modules'))) found.push(path.join(d, 'node_modules'))
    if (d === path.dirname(d)) return found
  }
}

/** This process's environment without what would let Node find packages elsewhere. */
export function bareEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('OUTPOST_') && k !== 'NODE_PATH' && k !== 'NODE_OPTIONS' && k !== 'DEBUG') env[k] = v
  return { ...env, ...extra }
}
