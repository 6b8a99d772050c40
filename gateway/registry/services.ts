// The services a device announces in its presence, as the registry keeps them. A presence is
// untrusted input: what an entry may hold is bounded as the devices' own directory bounds it
// (MAX_SERVICES, MAX_NAMES, MAX_NAME_LENGTH, shared with the contract store).
import type { PresenceService } from '../../runtime/wire/envelope.js'
import { MAX_NAME_LENGTH, MAX_NAMES, MAX_SERVICES } from './contracts.js'

/** One service a device announced: its contract's names, as its presence carries them (queues and schedules absent from presence format 1). */
export type ServiceEntry = PresenceService

const isName = (s: unknown): s is string => typeof s === 'string' && s.length > 0 && s.length <= MAX_NAME_LENGTH

/** Up to MAX_NAMES distinct names of a list from a presence; anything else in it is skipped. */
function names(list: unknown): string[] {
  if (!Array.isArray(list)) return []
  const out = new Set<string>()
  for (const n of list) {
    if (out.size >= MAX_NAMES) break
    if (isName(n)) out.add(n)
  }
  return [...out]
}

/** The services of a presence as far as the bounds allow; an entry that names no service is skipped. */
export function servicesOf(services: unknown): ServiceEntry[] {
  const out: ServiceEntry[] = []
  const seen = new Set<string>()
  for (const s of Array.isArray(services) ? (services as unknown[]) : []) {
    if (out.length >= MAX_SERVICES) break
    if (typeof s !== 'object' || s === null) continue
    const { name, version, commands, events, queues, schedules } = s as Record<string, unknown>
    if (!isName(name) || !isName(version) || seen.has(`${name}@${version}`)) continue
    seen.add(`${name}@${version}`)
    const entry: ServiceEntry = { name, version, commands: names(commands), events: names(events) }
    if (queues !== undefined) entry.queues = names(queues)
    if (schedules !== undefined) entry.schedules = names(schedules)
    out.push(entry)
  }
  return out
}

/**
 * The services a registry row holds (JSON, as the registry wrote it), bounded again as a presence
 * is: none when there is no row or its text does not parse.
 */
export function parseServices(json: string | undefined): ServiceEntry[] {
  try {
    return json === undefined ? [] : servicesOf(JSON.parse(json))
  } catch {
    return []
  }
}
