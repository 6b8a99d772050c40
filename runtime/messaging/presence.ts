import { ENVELOPE_VERSION, type Envelope, type PresencePayload } from '../wire/envelope.js'

/**
 * Builds the presence envelope that says a device is gone (the MQTT last will), naming the
 * services it declares, so whoever starts while it is away knows them (SERVICE_UNREACHABLE, not NO_HANDLER).
 */
export function offlinePresence(deviceId: string, instanceId: string, at: number, services: PresencePayload['services'] = []): Envelope {
  const payload: PresencePayload = { online: false, services }
  return { v: ENVELOPE_VERSION, kind: 'presence', id: `offline-${instanceId}`, src: deviceId, inst: instanceId, at, payload }
}
