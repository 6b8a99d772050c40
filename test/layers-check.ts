import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, posix, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

/**
 * The import rules of the source tree: layers point inward. Inner layers (errors, leaf modules,
 * contracts, wire, ports) know nothing of outer ones; adapters (bridges, stores) plug into ports
 * and never reach into the runtime's own rooms; the runtime never imports the applications built
 * on it. `test/layers.test.ts` runs this over the tree; `checkLayers` takes files as text, so
 * the checker itself is tested on made-up files.
 */

/** One source file: its path from the repository root (with `/`) and its text. */
export interface SourceFile {
  path: string
  text: string
}

/** One import against the rules. */
export interface Violation {
  file: string
  /** The specifier as written. */
  specifier: string
  /** Which rule it breaks. */
  rule: string
}

/** One import found in a file. */
export interface FoundImport {
  specifier: string
  /** `import type`, `export type`, or every named binding marked `type`: erased at compile time. */
  typeOnly: boolean
  /** `import('…')`. */
  dynamic: boolean
}

/** Folders whose sources the check reads. */
export const CHECKED_ROOTS = ['runtime', 'gateway', 'devices', 'build', 'bin', 'examples'] as const

const SOURCE = /\.(ts|mts|cts|js|mjs|cjs)$/

/** Every source file under the checked folders of `repo` (no node_modules, no build output). */
export function readSources(repo: string): SourceFile[] {
  const files: SourceFile[] = []
  const walk = (dir: string): void => {
    let entries
    try {
      entries = readdirSync(dir, { withFileTypes: true })
    } catch {
      return
    }
    for (const e of entries) {
      if (e.name === 'node_modules' || e.name === 'dist' || e.name.startsWith('.')) continue
      const full = join(dir, e.name)
      if (e.isDirectory()) walk(full)
      else if (SOURCE.test(e.name) && !e.name.endsWith('.d.ts')) files.push({ path: relative(repo, full).split(sep).join('/'), text: readFileSync(full, 'utf8') })
    }
  }
  for (const root of CHECKED_ROOTS) walk(join(repo, root))
  return files
}

/** The imports of one file: static imports and re-exports (type-only ones too) and dynamic `import()` of a literal. */
export function findImports(file: SourceFile): FoundImport[] {
  const kind = /\.(js|mjs|cjs)$/.test(file.path) ? ts.ScriptKind.JS : ts.ScriptKind.TS
  const source = ts.createSourceFile(file.path, file.text, ts.ScriptTarget.Latest, false, kind)
  const found: FoundImport[] = []
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause
      let typeOnly = clause?.isTypeOnly ?? false
      if (clause !== undefined && !typeOnly && clause.name === undefined && clause.namedBindings !== undefined && ts.isNamedImports(clause.namedBindings)) {
        const names = clause.namedBindings.elements
        typeOnly = names.length > 0 && names.every((n) => n.isTypeOnly)
      }
      found.push({ specifier: node.moduleSpecifier.text, typeOnly, dynamic: false })
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier !== undefined && ts.isStringLiteral(node.moduleSpecifier)) {
      let typeOnly = node.isTypeOnly
      if (!typeOnly && node.exportClause !== undefined && ts.isNamedExports(node.exportClause)) {
        const names = node.exportClause.elements
        typeOnly = names.length > 0 && names.every((n) => n.isTypeOnly)
      }
      found.push({ specifier: node.moduleSpecifier.text, typeOnly, dynamic: false })
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
      found.push({ specifier: node.moduleReference.expression.text, typeOnly: node.isTypeOnly, dynamic: false })
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = node.arguments[0]
      if (arg !== undefined && (ts.isStringLiteral(arg) || ts.isNoSubstitutionTemplateLiteral(arg))) found.push({ specifier: arg.text, typeOnly: false, dynamic: true })
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push({ specifier: node.argument.literal.text, typeOnly: true, dynamic: false })
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return found
}

/**
 * Where a repository path sits: `errors`, `leaf` (a module directly under runtime/ other than
 * errors.ts and index.ts), `index` (runtime/index.ts), a runtime folder (`contract`, `wire`,
 * `ports`, `bridges`, `stores`, `service`, …), or a top-level folder outside runtime/
 * (`gateway`, `devices`, `build`, `bin`, `test`, …).
 */
export function zoneOf(path: string): string {
  const parts = path.split('/')
  if (parts[0] !== 'runtime') return parts.length > 1 ? parts[0]! : 'root'
  if (parts.length === 2) {
    if (parts[1] === 'errors.ts') return 'errors'
    if (/^index\.[mc]?[tj]s$/.test(parts[1]!)) return 'index'
    return 'leaf'
  }
  return parts[1]!
}

const ADAPTERS = new Set(['bridges', 'stores'])
const RUNTIME_ROOMS = new Set(['service', 'queue', 'messaging', 'outbox', 'schedule'])
const OUTSIDE_RUNTIME = new Set(['gateway', 'devices', 'build', 'bin', 'test', 'examples'])
const CONTRACT_PACKAGES = new Set(['valibot', 'croner', 'pino'])
/** Libraries that only their adapter's folder under runtime/ imports (applications outside runtime/ may). */
const LIBRARY_HOMES: Record<string, string> = { mqtt: 'runtime/bridges/mqtt/', 'better-sqlite3': 'runtime/stores/sqlite/' }
/** Packages a contract may import for their types only. */
const CONTRACT_TYPE_PACKAGES = new Set(['pino'])

/** The package an import names (`@scope/name` or `name`), or undefined for a relative path. */
function packageOf(specifier: string): string | undefined {
  if (specifier.startsWith('.') || specifier.startsWith('/')) return undefined
  const parts = specifier.split('/')
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]
}

/** The repository path a relative import points at (a `.js` specifier names its `.ts` source). */
function resolve(from: string, specifier: string): string {
  const target = posix.normalize(posix.join(posix.dirname(from), specifier))
  return target.replace(/\.js$/, '.ts').replace(/\.mjs$/, '.mts').replace(/\.cjs$/, '.cts')
}

/** Checks every import of `files` against the layer rules; an empty list when all point inward. */
export function checkLayers(files: readonly SourceFile[]): Violation[] {
  const violations: Violation[] = []
  for (const file of files) {
    const from = zoneOf(file.path)
    const inRuntime = file.path.startsWith('runtime/')
    for (const imp of findImports(file)) {
      const bad = (rule: string): void => void violations.push({ file: file.path, specifier: imp.specifier, rule })
      const pkg = packageOf(imp.specifier)
      if (pkg !== undefined) {
        if (pkg === 'cbor-x' && !file.path.startsWith('runtime/wire/')) bad('cbor-x is imported only under runtime/wire/ (use runtime/wire/value-codec.ts or the envelope codec)')
        const home = LIBRARY_HOMES[pkg]
        if (inRuntime && home !== undefined && !file.path.startsWith(home)) bad(`${pkg} is imported only by its adapter, under ${home}`)
        if (from === 'contract') {
          if (!CONTRACT_PACKAGES.has(pkg)) bad(`contracts import no package but ${[...CONTRACT_PACKAGES].join(', ')}`)
          else if (CONTRACT_TYPE_PACKAGES.has(pkg) && !imp.typeOnly) bad(`contracts import ${pkg} for its types only`)
        }
        if (from === 'ports' && !imp.typeOnly) bad('ports import types only')
        continue
      }
      if (!inRuntime) continue
      const target = resolve(file.path, imp.specifier)
      const to = zoneOf(target)
      if (!target.startsWith('runtime/')) {
        if (OUTSIDE_RUNTIME.has(to)) bad(`runtime/ never imports ${to}/`)
        else bad('runtime/ imports nothing outside runtime/ but packages')
        continue
      }
      switch (from) {
        case 'errors':
        case 'leaf':
          if (to !== 'errors' && to !== 'leaf') bad('errors.ts and leaf modules under runtime/ import nothing from runtime/ but errors.ts and other leaf modules')
          break
        case 'contract':
          if (to !== 'contract' && to !== 'errors' && to !== 'leaf') bad('contracts import only contracts, errors.ts and leaf modules')
          break
        case 'wire':
          if (to !== 'wire' && to !== 'errors' && to !== 'leaf') bad('wire imports only wire, errors.ts and leaf modules')
          break
        case 'ports':
          if (to !== 'ports' && to !== 'wire' && to !== 'contract' && to !== 'errors') bad('ports import only from ports, wire, contracts and errors.ts')
          else if (!imp.typeOnly) bad('ports import types only')
          break
        default:
          if (ADAPTERS.has(from) && RUNTIME_ROOMS.has(to)) bad(`adapters (bridges, stores) never import runtime/${to}/`)
          // The runtime binds contracts to ports; the applications pick adapters. Its only
          // exception: the memory stores, the embedded defaults of a runtime given no store.
          if (RUNTIME_ROOMS.has(from) && ADAPTERS.has(to) && !target.startsWith('runtime/stores/memory/')) bad(`the runtime (runtime/${from}/) never imports an adapter but the memory stores (its embedded defaults)`)
      }
    }
  }
  return violations
}

/** A violation as one line: `file → specifier (rule)`. */
export function formatViolation(v: Violation): string {
  return `${v.file} → ${v.specifier} (${v.rule})`
}

/** The repository root, from this file's place in it. */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
