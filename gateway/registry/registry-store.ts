// The registry's rows in the gateway database (`registry` table): loaded once when the registry
// is created, then written behind what changes in memory, gathered into one transaction per
// wait, one row per device, so a flood of statuses costs a commit per wait, not one per frame.
import type { Statement } from 'better-sqlite3'
import { errorMessage } from '../../runtime/errors.js'
import type { LogLimiter } from '../../runtime/log-limiter.js'
import type { DeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import type { Known } from './liveness.js'
import type { ServiceEntry } from './services.js'

export interface RegistryStore {
  /** Every entry the table holds, the one seen the longest ago first. */
  load(): [string, Known][]
  /** Every device's services (JSON, as written), the ones not written yet in place of the rows'. */
  services(): Map<string, string>
  /** One device's services (JSON), the ones not written yet first; undefined when it has no row. */
  servicesOf(device: string): string | undefined
  /** Writes a device's entry at the next flush, with its services when given (they changed). */
  changed(device: string, services?: readonly ServiceEntry[]): void
  /** Deletes a device's row at the next flush (the registry forgot it). */
  forget(device: string): void
  /** Keeps a row `forget` was to delete: the device is known again. */
  revive(device: string): void
  /** Writes what is still pending; a failed write is not tried again. */
  close(): void
}

export interface RegistryStoreOptions {
  /** The entry in memory a pending write takes its row from (none: nothing is written). */
  entry: (device: string) => Known | undefined
  /** Longest wait before what changed is written, ms. */
  flushMs: number
  /** Where a failed write is told. */
  limiter?: LogLimiter
}

interface Row {
  device: string
  online: number
  instance: string | null
  runtime: string | null
  first_seen: number
  last_seen: number
  changed_at: number
}

export function createRegistryStore(database: DeviceDatabase, opts: RegistryStoreOptions): RegistryStore {
  const { db } = database
  const { entry, flushMs, limiter } = opts
  // Written at the next flush: the entry, with its services when they changed (JSON).
  const pending = new Map<string, { services?: string }>()
  const deleted = new Set<string>()
  let timer: NodeJS.Timeout | undefined
  let closed = false

  const all: Statement = db.prepare('SELECT device, online, instance, runtime, first_seen, last_seen, changed_at FROM registry ORDER BY last_seen')
  const upsert: Statement = db.prepare(`
    INSERT INTO registry (device, online, instance, runtime, first_seen, last_seen, changed_at, services)
    VALUES (@device, @online, @instance, @runtime, @firstSeen, @lastSeen, @changedAt, @services)
    ON CONFLICT (device) DO UPDATE SET online = excluded.online, instance = excluded.instance, runtime = excluded.runtime,
      first_seen = excluded.first_seen, last_seen = excluded.last_seen, changed_at = excluded.changed_at, services = excluded.services`)
  const update: Statement = db.prepare(`
    UPDATE registry SET online = @online, instance = @instance, runtime = @runtime, first_seen = @firstSeen, last_seen = @lastSeen, changed_at = @changedAt
    WHERE device = @device`)
  const remove: Statement = db.prepare('DELETE FROM registry WHERE device = ?')
  const servicesOfOne: Statement = db.prepare('SELECT services FROM registry WHERE device = ?')
  const servicesOfAll: Statement = db.prepare('SELECT device, services FROM registry')

  const flush = (): void => {
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
    if (pending.size === 0 && deleted.size === 0) return
    try {
      database.transaction(() => {
        for (const device of deleted) remove.run(device)
        for (const [device, p] of pending) {
          const k = entry(device)
          if (k === undefined) continue
          const row = { device, online: k.online ? 1 : 0, instance: k.instance ?? null, runtime: k.runtime ?? null, firstSeen: k.firstSeen, lastSeen: k.lastSeen, changedAt: k.changedAt }
          if (p.services !== undefined) upsert.run({ ...row, services: p.services })
          else update.run(row)
        }
      })
      deleted.clear()
      pending.clear()
    } catch (err) {
      // Kept for the next try (a full disk may make room); the entries in memory stay right.
      limiter?.error('write', { err: errorMessage(err) }, 'registry not written to the gateway database; trying again')
      if (!closed) schedule()
    }
  }
  const schedule = (): void => {
    if (timer === undefined) timer = setTimeout(flush, flushMs).unref()
  }

  return {
    load() {
      return (all.all() as Row[]).map((r): [string, Known] => {
        const k: Known = { online: r.online === 1, firstSeen: r.first_seen, lastSeen: r.last_seen, changedAt: r.changed_at }
        if (r.instance !== null) k.instance = r.instance
        if (r.runtime !== null) k.runtime = r.runtime
        return [r.device, k]
      })
    },
    services() {
      const out = new Map<string, string>()
      for (const r of servicesOfAll.all() as { device: string; services: string }[]) out.set(r.device, r.services)
      for (const [device, p] of pending) if (p.services !== undefined) out.set(device, p.services)
      return out
    },
    servicesOf: (device) => pending.get(device)?.services ?? (servicesOfOne.get(device) as { services: string } | undefined)?.services,
    changed(device, services) {
      const p = pending.get(device) ?? {}
      if (services !== undefined) p.services = JSON.stringify(services)
      pending.set(device, p)
      schedule()
    },
    forget(device) {
      pending.delete(device)
      deleted.add(device)
    },
    revive: (device) => void deleted.delete(device),
    close() {
      closed = true
      flush()
    },
  }
}
