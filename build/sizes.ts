// How big a device bundle is and what makes it so: bytes per dependency from esbuild's metafile,
// and the size budget a bundle must stay within.
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import type { Metafile } from 'esbuild'
import { ErrorCode, OutpostError } from '../runtime/errors.js'

/** Bytes of the bundle that came from one dependency (or from the project's own code). */
export interface SizeShare {
  /** An npm package name, or `outpost runtime`, `device code`, `bundle stubs`, … for the project's own files. */
  name: string
  bytes: number
}

/** The most a bundle's JavaScript may weigh, KiB (1024 bytes); the addon and the source map are not counted. */
export interface SizeBudget {
  minifiedKb: number
  gzipKb: number
}

/** The budget when nothing else is said: the goal for a device with MQTT, SQLite, pino and a service. */
export const DEFAULT_BUDGET: SizeBudget = { minifiedKb: 300, gzipKb: 100 }

/** Where a device's own budget may be written (see docs/build.md, "Size budgets"). */
export const BUDGETS_FILE = path.join('build', 'budgets.json')

/** Who an input of the bundle belongs to. */
export function ownerOf(input: string): string {
  const p = input.split(path.sep).join('/')
  const pkg = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(p)
  if (pkg !== null) return pkg[1]!
  if (p.startsWith('runtime/')) return 'outpost runtime'
  if (p.startsWith('devices/')) return 'device code'
  if (p.startsWith('build/stubs/')) return 'bundle stubs'
  // The contract document's parts, made by the build (build/contract-table.ts).
  if (p.startsWith('<define:')) return 'contract document'
  return p.split('/')[0] ?? p
}

/** The bytes of the output file `outFile` (as the metafile names it) per owner, largest first. */
export function sizeBreakdown(metafile: Metafile, outFile?: string): SizeShare[] {
  const outputs = Object.entries(metafile.outputs).filter(([name]) => !name.endsWith('.map'))
  const output = (outFile === undefined ? outputs[0] : outputs.find(([name]) => name === outFile || name.endsWith(outFile)))?.[1]
  if (output === undefined) return []
  const by = new Map<string, number>()
  for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
    if (bytesInOutput === 0) continue
    const owner = ownerOf(input)
    by.set(owner, (by.get(owner) ?? 0) + bytesInOutput)
  }
  return [...by].map(([name, bytes]) => ({ name, bytes })).sort((a, b) => b.bytes - a.bytes || (a.name < b.name ? -1 : 1))
}

/** Bytes as KiB with one decimal. */
export const kb = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KB`

/**
 * The budget of device `name`: `override` (the command line) over the device's entry in
 * build/budgets.json over that file's default over DEFAULT_BUDGET, each value on its own.
 * @throws INVALID_CONFIG when build/budgets.json is not what docs/build.md describes
 */
export function budgetFor(name: string, root: string, override: Partial<SizeBudget> = {}): SizeBudget {
  const file = path.join(root, BUDGETS_FILE)
  let fromFile: { default?: Partial<SizeBudget>; devices?: Record<string, Partial<SizeBudget>> } = {}
  if (existsSync(file)) {
    try {
      fromFile = JSON.parse(readFileSync(file, 'utf8')) as typeof fromFile
    } catch (err) {
      throw new OutpostError(ErrorCode.INVALID_CONFIG, `${BUDGETS_FILE} is not JSON: ${(err as Error).message}`)
    }
  }
  const layers = [DEFAULT_BUDGET, fromFile.default ?? {}, fromFile.devices?.[name] ?? {}, override]
  const pick = (key: keyof SizeBudget): number => {
    let value = DEFAULT_BUDGET[key]
    for (const layer of layers) {
      const v = layer[key]
      if (v === undefined) continue
      if (typeof v !== 'number' || !(v > 0)) throw new OutpostError(ErrorCode.INVALID_CONFIG, `${BUDGETS_FILE}: ${key} of ${name} must be a number of KB above 0, not ${JSON.stringify(v)}`)
      value = v
    }
    return value
  }
  return { minifiedKb: pick('minifiedKb'), gzipKb: pick('gzipKb') }
}

/**
 * Checks a bundle against its budget.
 * @throws BUDGET_EXCEEDED saying which size is over by how much and naming the five biggest contributors
 */
export function checkBudget(name: string, sizes: { bytes: number; gzipBytes: number }, budget: SizeBudget, breakdown: readonly SizeShare[]): void {
  const over: string[] = []
  if (sizes.bytes > budget.minifiedKb * 1024) over.push(`${kb(sizes.bytes)} minified (budget ${budget.minifiedKb} KB)`)
  if (sizes.gzipBytes > budget.gzipKb * 1024) over.push(`${kb(sizes.gzipBytes)} gzip (budget ${budget.gzipKb} KB)`)
  if (over.length === 0) return
  const biggest = breakdown.slice(0, 5).map((s) => `${s.name} ${kb(s.bytes)}`).join(', ')
  throw new OutpostError(ErrorCode.BUDGET_EXCEEDED, `the ${name} bundle is over its size budget: ${over.join(', ')}; biggest contributors: ${biggest} (raise it with --budget-kb/--gzip-budget-kb or in ${BUDGETS_FILE})`, {
    details: { device: name, bytes: sizes.bytes, gzipBytes: sizes.gzipBytes, budget, biggest: breakdown.slice(0, 5) },
  })
}
