import { existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const above = fileURLToPath(new URL('..', import.meta.url))

/**
 * The project's folder (package.json, devices/, node_modules/): the one above build/ when this
 * runs from the sources, the one above dist/ when it runs compiled.
 */
export const PROJECT_ROOT = existsSync(path.join(above, 'package.json')) ? above : path.dirname(path.resolve(above))
