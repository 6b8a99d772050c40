// A device bundle does not carry the JSON Schema converter (@valibot/to-json-schema and
// runtime/service/contract-schemas.ts, about 17 KB minified). Its contract document is made when
// it is built instead: the modules the device's entry imports are loaded in a Node process of
// their own, with every contract they define collected as it is defined
// (runtime/contract/contract.ts, CONTRACTS_DEFINED); each is converted there, and the result goes
// into the bundle as a table (runtime/service/contract-document.ts). The entry itself is not run:
// a device's main starts the device. Contracts defined at the top level of a module are found;
// one made inside a function is announced with open schemas, and the device says so in its log.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { build, type Plugin } from 'esbuild'
import { ErrorCode, errorMessage, OutpostError } from '../runtime/errors.js'
import type { ContractService } from '../runtime/wire/envelope.js'
import { stubsDir } from './device-stubs.js'
import { esbuildErrorLine } from './esbuild-errors.js'
import { PROJECT_ROOT } from './project-root.js'

/** The name a bundle's table is defined under (esbuild `define`); read by runtime/service/contract-document.ts. */
export const CONTRACT_TABLE_NAME = '__OUTPOST_CONTRACT_TABLE__'

/** The converter's module, as contract-document.ts imports it. */
const CONVERTER = /^\.\/contract-schemas\.js$/

/** How long the loading script may take. */
const LOAD_TIMEOUT_MS = 60_000

/**
 * Runs ES module `script` in a Node process of its own, given on its standard input and resolving
 * its packages from `cwd` (nothing is written to disk: a read-only or full project builds the same).
 * @returns its standard output; rejects with an error carrying `stderr` when it fails
 */
function runModule(script: string, cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-'], { cwd, stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (d: Buffer) => out.push(d))
    child.stderr.on('data', (d: Buffer) => err.push(d))
    const timer = setTimeout(() => child.kill('SIGKILL'), LOAD_TIMEOUT_MS)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      if (code === 0) return resolve(Buffer.concat(out).toString())
      const why = signal === null ? `exited with code ${code}` : `was stopped by ${signal}${signal === 'SIGKILL' ? ` (took over ${LOAD_TIMEOUT_MS / 1000} s)` : ''}`
      reject(Object.assign(new Error(`loading the contracts ${why}`), { stderr: Buffer.concat(err).toString() }))
    })
    // A script that exits before reading all of it closes the pipe: its own exit says why.
    child.stdin.on('error', () => {})
    child.stdin.end(script)
  })
}

const failed = (name: string, why: string, cause?: unknown): OutpostError =>
  new OutpostError(ErrorCode.BUILD_FAILED, `device ${name}: its contracts could not be read for the bundle: ${why}`, cause === undefined ? undefined : { cause })

/**
 * The contract table of device `name` (entry `entry`, relative to `root`): every contract the
 * modules its entry imports define, converted, by `<name>@<version>`.
 * @throws BUILD_FAILED when those modules cannot be bundled or loaded (the first line of the error)
 */
export async function contractTableOf(name: string, entry: string, root: string): Promise<Record<string, ContractService>> {
  const common = { absWorkingDir: root, bundle: true, platform: 'node', format: 'esm', packages: 'external', logLevel: 'silent', write: false } as const
  // What the entry imports (not the entry: it would start the device).
  let imports: string[]
  try {
    const graph = await build({ ...common, entryPoints: [entry], metafile: true, outfile: path.join(root, 'graph.mjs') })
    imports = (graph.metafile.inputs[entry.split(path.sep).join('/')]?.imports ?? []).filter((i) => !i.external && i.kind === 'import-statement').map((i) => i.path)
  } catch (err) {
    throw failed(name, esbuildErrorLine(err) ?? errorMessage(err), err)
  }
  const rel = (p: string): string => JSON.stringify(`./${p.split(path.sep).join('/')}`)
  // The runtime's own modules, from the device's project, else from this one (a device's project may
  // import the runtime from elsewhere: the list is found under a global symbol, whichever copy of
  // the runtime defines the contracts).
  const runtimeRoot = existsSync(path.join(root, 'runtime', 'contract', 'contract.ts')) ? root : PROJECT_ROOT
  const own = (p: string): string => JSON.stringify(path.join(runtimeRoot, p))
  const script = [
    `import { CONTRACTS_DEFINED } from ${own('runtime/contract/contract.ts')}`,
    'globalThis[CONTRACTS_DEFINED] = []',
    // Dynamic imports: each module is loaded after the list is there.
    ...imports.map((p) => `await import(${rel(p)})`),
    `const { contractTable } = await import(${own('runtime/service/contract-schemas.ts')})`,
    'process.stdout.write(JSON.stringify(contractTable(globalThis[CONTRACTS_DEFINED])))',
  ].join('\n')
  let loader: string
  try {
    const out = await build({ ...common, stdin: { contents: script, resolveDir: root, sourcefile: `contracts-of-${name}.mjs`, loader: 'js' }, outfile: path.join(root, `contracts-of-${name}.mjs`) })
    loader = out.outputFiles[0]!.text
  } catch (err) {
    throw failed(name, esbuildErrorLine(err) ?? errorMessage(err), err)
  }
  try {
    return JSON.parse(await runModule(loader, root)) as Record<string, ContractService>
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '')
    // Node prints the line of code that threw before the error itself: the reason is the line that
    // starts with an error's name (`Error: …`, `TypeError [ERR_…]: …`), else the first that says error.
    const lines = stderr.split('\n')
    const line = lines.find((l) => /^\s*\w*Error\b/.test(l)) ?? lines.find((l) => /Error|error/.test(l)) ?? lines[0] ?? ''
    throw failed(name, line.trim() || errorMessage(err), err)
  }
}

/** The esbuild plugin that leaves the converter out of a bundle (a stand-in without `contractServiceOf`). */
export function converterLeftOut(root: string): Plugin {
  const standIn = path.join(stubsDir(root), 'contract-schemas-left-out.ts')
  return {
    name: 'outpost-converter-left-out',
    setup(b) {
      b.onResolve({ filter: CONVERTER }, (args) => (args.importer.endsWith(path.join('runtime', 'service', 'contract-document.ts')) ? { path: standIn } : undefined))
    },
  }
}
