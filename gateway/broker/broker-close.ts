import type { Aedes } from 'aedes'
import type { ConnectionLimit } from './connection-limit.js'
import type { Listeners } from './listeners.js'

/**
 * Stops every listener from accepting, drops every connection (the one on reserve and the
 * WebSocket clients too), then closes aedes. Also the way out of a start whose listen failed
 * part way.
 */
export async function closeBroker(aedes: Aedes, listeners: Listeners, limit: ConnectionLimit): Promise<void> {
  const stopped = listeners.servers.filter((s) => s.server.listening).map((s) => new Promise<void>((r) => s.server.close(() => r())))
  limit.destroyAll()
  for (const ws of listeners.wss?.clients ?? []) ws.terminate()
  await Promise.all(stopped)
  await new Promise<void>((r) => aedes.close(() => r()))
}
