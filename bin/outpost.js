#!/usr/bin/env node
// Loads the TypeScript CLI through tsx (device bundles are plain JS built by esbuild).
import { register } from 'tsx/esm/api'

register()
await import('./cli.ts')
