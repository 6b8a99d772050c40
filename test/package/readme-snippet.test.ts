// The README's "Writing a service" block is a complete program: typechecked against the package's
// entry points (outpost/…, resolved through package.json exports to the sources, as tsconfig's
// customConditions resolves them), with the project's compiler options. Zero diagnostics.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { codeBlocksOf, optionsOf, typecheck } from './typecheck.js'

const ROOT = path.resolve('.')

describe('README "Writing a service"', () => {
  const blocks = codeBlocksOf(readFileSync(path.join(ROOT, 'README.md'), 'utf8'), '## Writing a service')

  it('has one TypeScript block that imports only the package and valibot', () => {
    expect(blocks).toHaveLength(1)
    const specifiers = [...blocks[0]!.matchAll(/^import .* from '([^']+)'$/gm)].map((m) => m[1])
    expect(specifiers.length).toBeGreaterThan(1)
    for (const s of specifiers) expect(s === 'valibot' || s!.startsWith('outpost/')).toBe(true)
  })

  it('typechecks against the entry points with zero diagnostics', () => {
    // A file at the root of the package, as a module of its own: `outpost/…` is a self-reference.
    const file = path.join(ROOT, 'readme-writing-a-service.ts')
    const { diagnostics, resolved } = typecheck(blocks.join('\n'), file, optionsOf(path.join(ROOT, 'tsconfig.json')))
    expect(diagnostics).toEqual([])
    // Each outpost/… import is the entry point package.json names for it.
    const exportsMap = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, Record<string, string>> }).exports
    for (const [spec, to] of resolved) {
      if (!spec.startsWith('outpost/')) continue
      expect(to, spec).toBe(path.join(ROOT, exportsMap[`./${spec.slice('outpost/'.length)}`]!['outpost-source']!))
    }
  }, 60_000)
})
