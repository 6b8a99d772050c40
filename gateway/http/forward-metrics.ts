// The forwarder's figures on /metrics, per target: backlog (messages, bytes, oldest age),
// forwarded, duplicates, retried, dead-lettered, dropped by reason, and whether it is connected.
import type { ForwarderStats, TargetStats } from '../forward/forwarder.js'
import type { FollowOf, GaugeOf } from './http-server.js'

type Labeled<L extends string> = [Partial<Record<L, string>>, number][]

/** Adds the forward metrics; `read` is called at each scrape (undefined: no forwarding configured, no series). */
export function forwardMetrics(gauge: GaugeOf, follow: FollowOf, read: () => ForwarderStats | undefined, now: () => number = Date.now): void {
  const perTarget = (value: (t: TargetStats) => number): Labeled<'target'> => Object.entries(read()?.targets ?? {}).map(([target, t]) => [{ target }, value(t)])
  gauge('outpost_gateway_forward_up', '1 while the gateway is connected to the target, 0 otherwise.', () => perTarget((t) => (t.state === 'up' ? 1 : 0)), ['target'])
  gauge('outpost_gateway_forward_backlog_messages', 'Events queued on disk for the target, not yet confirmed by it.', () => perTarget((t) => t.backlog.messages), ['target'])
  gauge('outpost_gateway_forward_backlog_bytes', 'Bytes of those events (bodies, headers, subjects).', () => perTarget((t) => t.backlog.bytes), ['target'])
  gauge('outpost_gateway_forward_oldest_age_seconds', 'Age of the oldest event queued for the target (0 when none).', () => perTarget((t) => (t.backlog.oldestAt === undefined ? 0 : Math.max(0, (now() - t.backlog.oldestAt) / 1000))), ['target'])
  gauge('outpost_gateway_forward_in_flight', 'Events sent to the target and not yet confirmed.', () => perTarget((t) => t.inFlight), ['target'])
  gauge('outpost_gateway_forward_dead_letters', 'Events the target refused for good, kept in the dead-letter table.', () => perTarget((t) => t.dead), ['target'])
  follow('outpost_gateway_forward_forwarded_total', 'Events the target confirmed.', ['target'], () => perTarget((t) => t.forwarded))
  follow('outpost_gateway_forward_duplicates_total', 'Confirmed events the target already had (stored once).', ['target'], () => perTarget((t) => t.duplicates))
  follow('outpost_gateway_forward_retried_total', 'Sends that failed and were left queued to be sent again.', ['target'], () => perTarget((t) => t.retried))
  follow('outpost_gateway_forward_dead_lettered_total', 'Events moved to the dead-letter table.', ['target'], () => perTarget((t) => t.deadLettered))
  follow('outpost_gateway_forward_connect_failures_total', 'Failed attempts to connect to the target.', ['target'], () => perTarget((t) => t.connectFailures))
  follow('outpost_gateway_forward_dropped_total', 'Events not forwarded, by target and reason (full, dead-evicted; and with target "" for malformed, sender, refused, store).', ['target', 'reason'], () => {
    const s = read()
    if (s === undefined) return []
    const rows: Labeled<'target' | 'reason'> = []
    for (const [target, t] of Object.entries(s.targets)) for (const [reason, n] of Object.entries(t.dropped)) rows.push([{ target, reason }, n])
    for (const [reason, n] of Object.entries(s.dropped)) rows.push([{ target: '', reason }, n])
    return rows
  })
}
