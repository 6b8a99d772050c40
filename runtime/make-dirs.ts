// Making a folder and its missing parents, one level at a time. Node's recursive mkdir loops for
// ever (at full CPU) under /proc, where making a folder answers ENOENT and its parent EEXIST;
// made one by one, the first folder that cannot be made says why, with its own error.
import { existsSync, mkdirSync, statSync } from 'node:fs'
import path from 'node:path'

/**
 * Makes `dir` and its missing parents (`mode` for those it makes).
 * @throws the OS error of the first one that cannot be made; ENOTDIR when `dir` is there but not a folder
 */
export function makeDirs(dir: string, mode?: number): void {
  const resolved = path.resolve(dir)
  const missing: string[] = []
  for (let d = resolved; !existsSync(d); d = path.dirname(d)) {
    missing.push(d)
    if (path.dirname(d) === d) break
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d, mode === undefined ? undefined : { mode })
    } catch (err) {
      // Made meanwhile by another process: as good.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
  }
  if (!statSync(resolved).isDirectory()) throw Object.assign(new Error(`${dir} is not a folder`), { code: 'ENOTDIR' })
}
