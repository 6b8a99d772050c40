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

/**
 * `run` over each of `items`, `width` at a time, results in the order of `items`: for tests that
 * start many short processes independent of each other (CLI calls that refuse at once, say).
 */
export async function inTurns<T, R>(items: readonly T[], width: number, run: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await run(items[i]!)
    }
  }))
  return out
}
