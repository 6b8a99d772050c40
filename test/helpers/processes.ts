import path from 'node:path'
import { build } from 'esbuild'

/**
 * Builds a helper process from `test/e2e/chaos/<name>.ts` to plain JS, so each start (and
 * restart after a kill) is quick; the output stays inside the repository so node_modules resolve.
 * @returns the script's path
 */
export async function buildHelperProcess(name: string): Promise<string> {
  const script = path.resolve(`test/e2e/chaos/.build/${name}.mjs`)
  await build({ entryPoints: [`test/e2e/chaos/${name}.ts`], outfile: script, bundle: true, platform: 'node', format: 'esm', packages: 'external', logLevel: 'silent' })
  return script
}
