import { ENVELOPE_VERSION, type Envelope, type PresencePayload } from '../wire/envelope.js'

/** Builds the presence envelope that says a device is gone (the MQTT last will). */
export function offlinePresence(deviceId: string, instanceId: string, at: number): Envelope {
  const payload: PresencePayload = { online: false, services: [] }
  return { v: ENVELOPE_VERSION, kind: 'presence', id: `offline-${instanceId}`, src: deviceId, inst: instanceId, at, payload }
}
