import { ErrorCode, OutpostError } from '../errors.js'
import type { OutboxStats, OutboxStreamLimits } from '../ports/outbox.js'

/** Default limits: 64 MiB per stream, dropping the oldest when full. */
export const DEFAULT_STREAM_LIMITS: OutboxStreamLimits = { maxBytes: 64 * 1024 * 1024, policy: 'dropOldest' }

/** Byte bookkeeping and counters shared by the outbox adapters. */
export interface OutboxAccounting {
  readonly stats: OutboxStats
  bytesOf(stream: string): number
  limitsOf(stream: string): OutboxStreamLimits
  /** Decides whether an entry of `bytes` fits; returns how many bytes must be dropped first (0 when it fits). @throws OUTBOX_FULL */
  admit(stream: string, bytes: number): number
  added(stream: string, bytes: number): void
  /** An entry gone: delivered, or dropped (counted under `reason`, by default `full:<stream>`). */
  removed(stream: string, bytes: number, why: 'delivered' | 'dropped', reason?: string): void
  /** Several delivered entries of one stream at once. */
  removedMany(stream: string, bytes: number, count: number): void
  /** Takes entries and bytes per stream from the store again (after a rollback undid appends or drops). */
  recount(current: { stream: string; bytes: number; entries: number }[]): void
}

/** Creates the bookkeeping for given per-stream limits. */
export function createOutboxAccounting(limits: Record<string, OutboxStreamLimits> = {}, initial: { stream: string; bytes: number; entries: number }[] = []): OutboxAccounting {
  const bytes = new Map<string, number>()
  const stats: OutboxStats = { entries: 0, bytes: 0, appended: 0, delivered: 0, rejected: 0, dropped: {} }
  const recount = (current: { stream: string; bytes: number; entries: number }[]): void => {
    bytes.clear()
    stats.entries = 0
    stats.bytes = 0
    for (const i of current) {
      bytes.set(i.stream, i.bytes)
      stats.entries += i.entries
      stats.bytes += i.bytes
    }
  }
  recount(initial)
  const limitsOf = (stream: string): OutboxStreamLimits => limits[stream] ?? limits['*'] ?? DEFAULT_STREAM_LIMITS
  return {
    stats,
    recount,
    bytesOf: (stream) => bytes.get(stream) ?? 0,
    limitsOf,
    admit(stream, size) {
      const limit = limitsOf(stream)
      if (size > limit.maxBytes) {
        stats.rejected++
        throw new OutpostError(ErrorCode.OUTBOX_FULL, `a ${size}-byte message exceeds the ${limit.maxBytes}-byte limit of outbox stream "${stream}"`, { details: { stream, size, maxBytes: limit.maxBytes } })
      }
      const over = (bytes.get(stream) ?? 0) + size - limit.maxBytes
      if (over <= 0) return 0
      if (limit.policy === 'reject') {
        stats.rejected++
        throw new OutpostError(ErrorCode.OUTBOX_FULL, `outbox stream "${stream}" is full (${limit.maxBytes} bytes) and refuses new messages`, { retryable: true, details: { stream, maxBytes: limit.maxBytes } })
      }
      return over
    },
    added(stream, size) {
      bytes.set(stream, (bytes.get(stream) ?? 0) + size)
      stats.entries++
      stats.bytes += size
      stats.appended++
    },
    removedMany(stream, size, count) {
      bytes.set(stream, (bytes.get(stream) ?? 0) - size)
      stats.entries -= count
      stats.bytes -= size
      stats.delivered += count
    },
    removed(stream, size, why, reason = `full:${stream}`) {
      bytes.set(stream, (bytes.get(stream) ?? 0) - size)
      stats.entries--
      stats.bytes -= size
      if (why === 'delivered') stats.delivered++
      else stats.dropped[reason] = (stats.dropped[reason] ?? 0) + 1
    },
  }
}
