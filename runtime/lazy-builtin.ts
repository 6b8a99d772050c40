// Node's built-in modules that a device needs only after it is ready, loaded when first used.
// Loading node:crypto takes about 5 ms (a sixth of a bare Node start where it was measured), and
// a device needs none of it before it is ready: hashes are for OTA and oversized job payloads,
// random bytes for trace spans. node:net and node:tls are for the first connection, node:tty
// (which loads node:net) for log lines on a terminal; node:fs/promises (not in Node's startup
// snapshot: 1-1.5 ms, 1-2.8 ms of the thermo's start) for flashing over the air. The few random
// bytes a device does need while it starts (the tag of each id factory, the MQTT transport's
// marker) come from the kernel's random source directly.
import { closeSync, openSync, readSync } from 'node:fs'
import { createRequire } from 'node:module'

interface Builtins {
  'node:crypto': typeof import('node:crypto')
  'node:fs/promises': typeof import('node:fs/promises')
  'node:net': typeof import('node:net')
  'node:tls': typeof import('node:tls')
  'node:tty': typeof import('node:tty')
}

/**
 * A built-in module, loaded at the first call. process.getBuiltinModule is there from Node 20.16;
 * before, a require made anywhere finds a built-in module (no import.meta: a bundle may be CommonJS).
 */
export const builtin = <K extends keyof Builtins>(id: K): Builtins[K] =>
  (typeof process.getBuiltinModule === 'function' ? process.getBuiltinModule(id) : createRequire(process.execPath)(id)) as Builtins[K]

let crypto: Builtins['node:crypto'] | undefined

/** node:crypto (loaded at the first call). */
export const nodeCrypto = (): Builtins['node:crypto'] => (crypto ??= builtin('node:crypto'))

/** node:fs/promises (loaded at the first call). */
export const fsp = (): Builtins['node:fs/promises'] => builtin('node:fs/promises')

/**
 * Fills `buf` with random bytes from the operating system's random source, as `randomFillSync`
 * does, without loading node:crypto: from /dev/urandom where there is one (Linux, the BSDs,
 * macOS), through node:crypto otherwise or when it cannot be read.
 */
export function fillRandom<T extends Uint8Array>(buf: T): T {
  if (crypto === undefined) {
    let fd: number | undefined
    try {
      fd = openSync('/dev/urandom', 'r')
      let at = 0
      while (at < buf.length) {
        const n = readSync(fd, buf, at, buf.length - at, null)
        if (n <= 0) break
        at += n
      }
      if (at === buf.length) return buf
    } catch {
      // No such device here (Windows), or a sandbox without it: node:crypto below.
    } finally {
      if (fd !== undefined) closeSync(fd)
    }
  }
  return nodeCrypto().randomFillSync(buf)
}
