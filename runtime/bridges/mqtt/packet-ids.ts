/**
 * MQTT packet ids of one connection, shared by MQTT.js and the transport's own QoS 1 publishes
 * (direct-publisher.ts): an id is free again only once its owner released it, so the two never
 * hand out the same id while either still awaits an acknowledgement for it. Implements the
 * `messageIdProvider` option of MQTT.js (its default provider counts without knowing which ids
 * are still in use, which is fine for one user but not for two).
 */
export interface PacketIds {
  /** MQTT.js: a free id (1–65535), taken for MQTT.js; null when none is free. */
  allocate(): number | null
  /** MQTT.js: the id handed out last. */
  getLastAllocated(): number | null
  /** MQTT.js: takes a given id (a stored packet sent again); false when it is in use. */
  register(id: number): boolean
  /** MQTT.js: releases an id. */
  deallocate(id: number): void
  /** MQTT.js, on every CONNACK: releases every id MQTT.js holds (never the transport's own). */
  clear(): void
  /** The transport: a free id, taken for its own publishes; null when none is free. */
  take(): number | null
  /** The transport: releases one of its own ids. */
  release(id: number): void
}

const FREE = 0
const MQTTJS = 1
const OWN = 2

/** Creates the ids of one bridge (one per bridge: its connections follow one another). */
export function createPacketIds(): PacketIds {
  // Who holds each id; index 0 is never used (0 is not a valid packet id).
  const owner = new Uint8Array(65_536)
  let next = 1
  let last: number | null = null

  const find = (who: number): number | null => {
    for (let n = 0; n < 65_535; n++) {
      const id = next
      next = next === 65_535 ? 1 : next + 1
      if (owner[id] === FREE) {
        owner[id] = who
        last = id
        return id
      }
    }
    return null
  }
  return {
    allocate: () => find(MQTTJS),
    getLastAllocated: () => last,
    register(id) {
      if (owner[id] !== FREE) return false
      owner[id] = MQTTJS
      return true
    },
    deallocate(id) {
      if (owner[id] === MQTTJS) owner[id] = FREE
    },
    clear() {
      for (let id = 1; id < 65_536; id++) if (owner[id] === MQTTJS) owner[id] = FREE
    },
    take: () => find(OWN),
    release(id) {
      if (owner[id] === OWN) owner[id] = FREE
    },
  }
}
