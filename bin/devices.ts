// `outpost devices`: the devices allowed to log in to the gateway, from the command line. It
// opens the gateway database as a tool, so it works beside a running gateway, which notices a
// revoked or rotated device within a second and cuts its connection.
import { existsSync } from 'node:fs'
import path from 'node:path'
import { createDeviceTable, type DeviceRecord } from '../gateway/devices/device-table.js'
import { openGatewayDatabase } from '../gateway/store/gateway-database.js'
import { ErrorCode, isOutpostError, OutpostError } from '../runtime/errors.js'
import { makeDirs } from '../runtime/make-dirs.js'
import type { DeviceDatabase } from '../runtime/stores/sqlite/index.js'
import { DEVICE_ID } from './cli-args.js'
import { meant } from './close-to.js'

/** How to call `outpost devices`, shown after a wrong call. */
export const DEVICES_HELP = `Usage: outpost devices <command> [--config FILE] [--json]

Commands:
  add <id> [--role R]   allow a device to log in; prints its secret once (it is not stored, only a hash)
                        and a ready-to-use device line. Default role: device
  list                  the devices, their role, whether they are revoked, and (from the gateway's
                        registry) whether they are online and when they were last seen
  revoke <id>           its secret stops working; a running gateway disconnects it within a second
  rotate <id>           a new secret (printed once); the old one stops working at once
                        (a revoked device is active again with it)

The gateway database is <dataDir>/gateway.db (dataDir from --config FILE, OUTPOST_GATEWAY_DATA_DIR,
or .outpost/gateway). --json prints JSON for scripts.`

const bad = (message: string): OutpostError => new OutpostError(ErrorCode.BAD_ARGUMENT, message)

interface Presence {
  online: number
  last_seen: number
}

/** Runs one `outpost devices` command and returns what it prints. @throws BAD_ARGUMENT for a wrong call */
export async function runDevicesCommand(rest: string[], opts: { dataDir: string; role?: string; json?: boolean; mqttUrl: string; roles?: readonly string[] }): Promise<string> {
  const [verb, id, ...extra] = rest
  const verbs = ['add', 'list', 'revoke', 'rotate']
  if (verb === undefined) throw bad('outpost devices: which command? add, list, revoke or rotate')
  if (!verbs.includes(verb)) throw bad(`outpost devices: unknown command "${verb.slice(0, 40)}"${meant(verb, verbs)}; expected add, list, revoke or rotate`)
  const needsId = verb !== 'list'
  if (needsId && id === undefined) throw bad(`outpost devices ${verb}: which device? outpost devices ${verb} <id>`)
  const unexpected = needsId ? extra : [id, ...extra].filter((x) => x !== undefined)
  if (unexpected.length > 0) throw bad(`outpost devices ${verb}: unexpected argument "${String(unexpected[0]).slice(0, 40)}"`)
  if (opts.role !== undefined && verb !== 'add') throw bad(`outpost devices ${verb}: --role is for add only`)
  // A role the configuration does not define would only show at login, as a warning of the gateway's.
  if (opts.role !== undefined && opts.roles !== undefined && !opts.roles.includes(opts.role)) {
    throw bad(`--role "${opts.role.slice(0, 64)}" is not a role of the gateway's configuration (its roles: ${opts.roles.join(', ')}); define it under auth.roles first, and give that config with --config`)
  }
  const file = path.join(opts.dataDir, 'gateway.db')
  if (verb === 'add') makeDirs(opts.dataDir)
  else if (!existsSync(file)) throw new OutpostError(ErrorCode.NOT_FOUND, `no gateway database at ${file} (outpost devices add <id> creates it; or name the gateway's config with --config)`)
  const database = openListed(file, verb)
  try {
    const table = createDeviceTable(database)
    const credentials = (device: DeviceRecord, secret: string, what: string, wasRevokedAt?: number): string => {
      const url = new URL(opts.mqttUrl)
      url.username = device.id
      url.password = secret
      const line = `OUTPOST_DEVICE_ID=${device.id} OUTPOST_MQTT_URL=${url.href.replace(/\/$/, '')} npx outpost device <name>`
      if (opts.json === true) return JSON.stringify({ id: device.id, role: device.role, secret, url: url.href.replace(/\/$/, ''), ...(wasRevokedAt === undefined ? {} : { reactivated: true }) })
      // An id `outpost device` does not take (a plain MQTT client's may be any topic level): no line to run one with.
      const run = DEVICE_ID.test(device.id)
        ? ['Run a device with it:', `  ${line}`]
        : [`An MQTT client may log in with it; an Outpost device may not (OUTPOST_DEVICE_ID takes letters, digits, '.', '_' or '-', starting with a letter or digit).`]
      return [
        `${what} ${device.id} (role ${device.role}).`,
        // Rotating is how a revoked device comes back: said, not done quietly.
        ...(wasRevokedAt === undefined ? [] : [`${device.id} was revoked (${new Date(wasRevokedAt).toISOString()}); with this secret it is active again.`]),
        `secret: ${secret}`,
        'This secret is shown once and not stored (only its hash is): keep it now.',
        ...run,
      ].join('\n')
    }
    if (verb === 'add') {
      const { device, secret } = table.add(id!, opts.role ?? 'device')
      return credentials(device, secret, 'added')
    }
    if (verb === 'rotate') {
      const { device, secret, wasRevokedAt } = table.rotate(id!)
      return credentials(device, secret, 'new secret for', wasRevokedAt)
    }
    if (verb === 'revoke') {
      const known = table.get(id!)
      if (known === undefined) throw new OutpostError(ErrorCode.DEVICE_UNKNOWN, `no device "${id!.slice(0, 140)}"`)
      const done = table.revoke(id!)
      if (opts.json === true) return JSON.stringify({ id, revoked: true, already: !done })
      return done ? `revoked ${id}: its secret no longer works; a running gateway disconnects it` : `${id} was revoked already`
    }
    // list
    const presence = new Map<string, Presence>()
    for (const r of database.db.prepare('SELECT device, online, last_seen FROM registry').all() as ({ device: string } & Presence)[]) presence.set(r.device, r)
    const rows = table.list().map((d) => {
      const p = presence.get(d.id)
      return {
        id: d.id, role: d.role, createdAt: d.createdAt, status: d.revokedAt === undefined ? 'active' : 'revoked', revokedAt: d.revokedAt,
        online: p === undefined ? undefined : p.online === 1, lastSeen: p?.last_seen,
      }
    })
    if (opts.json === true) return JSON.stringify(rows)
    if (rows.length === 0) return 'no devices yet (outpost devices add <id>)'
    const time = (ms: number | undefined): string => (ms === undefined ? '-' : new Date(ms).toISOString().replace('T', ' ').slice(0, 19))
    const table2 = [['ID', 'ROLE', 'STATUS', 'PRESENCE', 'LAST SEEN', 'CREATED']].concat(
      rows.map((r) => [r.id, r.role, r.status, r.online === undefined ? 'never seen' : r.online ? 'online' : 'offline', time(r.lastSeen), time(r.createdAt)]),
    )
    const widths = table2[0]!.map((_, i) => Math.max(...table2.map((row) => row[i]!.length)))
    return table2.map((row) => row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')
  } finally {
    database.close()
  }
}

/**
 * The gateway database as a command needs it: 'tool' access for an existing one (an older schema
 * is updated first when no gateway holds it); 'device' when add finds none (no gateway uses the
 * folder yet, so the CLI creates it as the gateway would, taking its lock for that time); list,
 * which only reads, falls back to reading a database it may not write (a read-only mount, a backup).
 */
function openListed(file: string, verb: string): DeviceDatabase {
  const access = existsSync(file) ? 'tool' : 'device'
  try {
    return openGatewayDatabase(file, access)
  } catch (err) {
    if (verb !== 'list' || access !== 'tool' || !isOutpostError(err, ErrorCode.STORE_READ_ONLY)) throw err
    return openGatewayDatabase(file, 'read')
  }
}
