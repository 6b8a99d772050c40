import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** What bundling a device produced. */
export interface DeviceBundle {
  file: string
  bytes: number
}

/**
 * Bundles `devices/<name>/main.ts` into one minified ESM file (esbuild). Native addons stay
 * outside the bundle: cbor-x's optional `cbor-extract` (cbor-x falls back to JavaScript without it).
 */
export async function bundleDevice(name: string, outDir: string, root: string = ROOT): Promise<DeviceBundle> {
  await mkdir(outDir, { recursive: true })
  const file = path.join(outDir, `${name}.mjs`)
  const result = await build({
    entryPoints: [path.join(root, 'devices', name, 'main.ts')],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    minify: true,
    outfile: file,
    metafile: true,
    external: ['cbor-extract', 'better-sqlite3'],
    // CommonJS dependencies (mqtt, pino) call require(); give the ESM bundle one.
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    logLevel: 'silent',
  })
  const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0)
  return { file, bytes }
}
