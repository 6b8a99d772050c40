import { ENVELOPE_VERSION, PRESENCE_VERSION, type Envelope, type PresencePayload } from '../wire/envelope.js'

/**
 * The version of this runtime, announced in every presence (the `version` of package.json; a
 * test of the registry holds the two together). A constant: the runtime reads no file to know it.
 */
export const RUNTIME_VERSION = '0.1.0'

/** The payload of a presence this runtime writes: the current format, with its version. */
export function presencePayload(online: boolean, services: PresencePayload['services']): PresencePayload {
  return { v: PRESENCE_VERSION, online, runtime: RUNTIME_VERSION, services }
}

/**
 * Builds the presence envelope that says a device is gone (the MQTT last will), naming the
 * services it declares, so whoever starts while it is away knows them (SERVICE_UNREACHABLE, not NO_HANDLER).
 */
export function offlinePresence(deviceId: string, instanceId: string, at: number, services: PresencePayload['services'] = []): Envelope {
  return { v: ENVELOPE_VERSION, kind: 'presence', id: `offline-${instanceId}`, src: deviceId, inst: instanceId, at, payload: presencePayload(false, services) }
}
