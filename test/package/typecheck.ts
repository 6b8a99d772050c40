// Typechecks a piece of code as one more module of a project, with the TypeScript compiler API:
// how the package tests check the README's snippet against the package's entry points, first in
// this repository (sources), then in an install of the packed tarball (dist/*.d.ts).
import path from 'node:path'
import ts from 'typescript'

/**
 * The ```ts code blocks of a README section: from its heading to the next heading of any level
 * (the blocks of its subsections are fragments, shown with `…`, not programs).
 * @throws when the heading is missing
 */
export function codeBlocksOf(markdown: string, heading: string): string[] {
  const lines = markdown.split('\n')
  const start = lines.findIndex((l) => l.trim() === heading)
  if (start < 0) throw new Error(`no section "${heading}"`)
  const blocks: string[] = []
  let block: string[] | undefined
  for (const line of lines.slice(start + 1)) {
    if (block === undefined) {
      if (/^#+ /.test(line)) break
      if (/^```(ts|typescript)\s*$/.test(line)) block = []
    } else if (line.startsWith('```')) {
      blocks.push(block.join('\n'))
      block = undefined
    } else {
      block.push(line)
    }
  }
  return blocks
}

/** The compiler options of a tsconfig.json, as tsc would read them. */
export function optionsOf(tsconfigPath: string): ts.CompilerOptions {
  const read = ts.readConfigFile(tsconfigPath, (f) => ts.sys.readFile(f))
  if (read.error !== undefined) throw new Error(ts.flattenDiagnosticMessageText(read.error.messageText, '\n'))
  return ts.parseJsonConfigFileContent(read.config, ts.sys, path.dirname(tsconfigPath)).options
}

/** What a check found: each diagnostic as `file:line:col: TSnnnn message`, and the modules the code imported. */
export interface CheckResult {
  diagnostics: string[]
  /** Each import of the code, by specifier: the file it resolved to, or undefined. */
  resolved: Map<string, string | undefined>
}

/**
 * Typechecks `code` as if it were the file `file` (which need not exist), with `options`.
 * Reported: the options' and global diagnostics, the code's own, and those of every other file
 * `alsoCheck` accepts (e.g. the package's .d.ts); the rest of the program is only used.
 */
export function typecheck(code: string, file: string, options: ts.CompilerOptions, alsoCheck: (file: string) => boolean = () => false): CheckResult {
  const host = ts.createCompilerHost({ ...options, noEmit: true })
  const { getSourceFile, fileExists, readFile } = host
  host.fileExists = (f) => f === file || fileExists.call(host, f)
  host.readFile = (f) => (f === file ? code : readFile.call(host, f))
  host.getSourceFile = (f, lang, ...rest) => (f === file ? ts.createSourceFile(f, code, lang, true) : getSourceFile.call(host, f, lang, ...rest))
  const program = ts.createProgram({ rootNames: [file], options: { ...options, noEmit: true }, host })
  const found: ts.Diagnostic[] = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()]
  for (const sf of program.getSourceFiles()) {
    if (sf.fileName !== file && !alsoCheck(sf.fileName)) continue
    found.push(...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf))
  }
  const me = program.getSourceFile(file)!
  const resolved = new Map<string, string | undefined>()
  for (const imp of me.statements.filter(ts.isImportDeclaration)) {
    const spec = (imp.moduleSpecifier as ts.StringLiteral).text
    const mode = program.getModeForUsageLocation(me, imp.moduleSpecifier as ts.StringLiteral)
    resolved.set(spec, ts.resolveModuleName(spec, file, options, host, undefined, undefined, mode).resolvedModule?.resolvedFileName)
  }
  const diagnostics = found.map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n')
    if (d.file === undefined || d.start === undefined) return `TS${d.code} ${text}`
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start)
    return `${d.file.fileName}:${line + 1}:${character + 1}: TS${d.code} ${text}`
  })
  return { diagnostics, resolved }
}
