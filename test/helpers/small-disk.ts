import { execFileSync } from 'node:child_process'
import { chmodSync, closeSync, mkdirSync, openSync, readdirSync, rmSync, statfsSync, writeSync } from 'node:fs'
import path from 'node:path'

/** A folder on a file system of its own, when this machine lets a test mount one (root, tmpfs). */
export interface SmallDisk {
  readonly dir: string
  /** Remounts it read-only. */
  readOnly(): void
  /** Unmounts it (and removes the mount point). */
  dispose(): void
}

/** Mounts a tmpfs of `size` (e.g. '4m') at `dir`; undefined when mounting is not allowed here. */
export function mountSmallDisk(dir: string, size: string): SmallDisk | undefined {
  mkdirSync(dir, { recursive: true })
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' })
  } catch {
    return undefined
  }
  return {
    dir,
    readOnly: () => execFileSync('mount', ['-o', 'remount,ro', dir], { stdio: 'ignore' }),
    dispose: () => {
      try {
        execFileSync('umount', [dir], { stdio: 'ignore' })
      } catch {
        execFileSync('umount', ['-l', dir], { stdio: 'ignore' })
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * A folder that a device process the test starts cannot write: a read-only tmpfs where the
 * machine allows mounting; otherwise the folder and its files made read-only (chmod), and, when
 * this process is root (whom modes do not stop), the device run as `nobody`.
 * `seal` is called once the folder holds what the device should find.
 */
export function readOnlyFolder(dir: string): { dir: string; seal(): void; spawnAs: { uid?: number; gid?: number }; dispose(): void } {
  const disk = mountSmallDisk(dir, '8m')
  if (disk !== undefined) return { dir, seal: () => disk.readOnly(), spawnAs: {}, dispose: () => disk.dispose() }
  const root = process.getuid?.() === 0
  return {
    dir,
    seal: () => {
      for (const f of readdirSync(dir)) chmodSync(path.join(dir, f), 0o444)
      chmodSync(dir, 0o555)
      // `nobody` must reach the folder through its parents.
      if (root) chmodSync(path.dirname(dir), 0o755)
    },
    spawnAs: root ? { uid: 65534, gid: 65534 } : {},
    dispose: () => {
      chmodSync(dir, 0o755)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * Appends to `file` until its disk refuses (ENOSPC), to the last byte (a disk that fills takes
 * part of a write), or until only `leave` bytes are free: the device's own data growing.
 * @returns `file` (removing it gives the room back)
 */
export function fillDisk(file: string, leave = 0): string {
  const dir = path.dirname(file)
  const free = (): number => {
    const s = statfsSync(dir)
    return s.bavail * s.bsize
  }
  const fd = openSync(file, 'a')
  try {
    for (const size of [1024 * 1024, 4096, 1]) {
      const chunk = Buffer.alloc(size, 0x5a)
      try {
        for (;;) {
          const room = leave > 0 ? free() - leave : size
          if (room <= 0) return file
          writeSync(fd, chunk, 0, Math.min(size, room))
        }
      } catch (err) {
        if ((err as { code?: string }).code !== 'ENOSPC') throw err
      }
    }
  } finally {
    closeSync(fd)
  }
  return file
}
