// What the gateway benchmark's processes and the section (test/bench/gateway.ts) agree on:
// device ids, where the seeded secrets are, how a gateway runs. No code that runs on import.

/** How the gateway runs: what the section's row names say was on. */
export interface GatewayMode {
  auth: boolean
  persistence: 'sqlite' | 'memory'
  /** Holds gateway.db (the seeded devices) and broker.db; needed for auth and for SQLite. */
  dataDir?: string
}

/** Where `gateway-broker.ts seed` leaves the secrets (device id → secret) in the data dir, for the clients. */
export const SECRETS_FILE = 'bench-secrets.json'

/** The throughput figure's subscriber and publishers. */
export const SUBSCRIBER_ID = 'bench-sub'
export const publisherId = (i: number): string => `bench-pub-${i}`

/** The connect storm's devices. */
export const stormId = (i: number): string => `storm-${String(i).padStart(4, '0')}`
