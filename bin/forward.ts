// `outpost forward`: the gateway's forward queue (<dataDir>/forward.db) from the command line:
// what waits for each cloud target, and the dead letters (events a target refused for good) to
// inspect, send again or delete. It opens the file as a tool, beside a running gateway, whose
// pump picks redriven events up with the next ones it sends (within a few seconds when idle).
import { existsSync } from 'node:fs'
import path from 'node:path'
import { openForwardQueue, type ForwardQueue } from '../gateway/forward/forward-queue.js'
import { ErrorCode, OutpostError } from '../runtime/errors.js'

export const FORWARD_HELP = `Usage: outpost forward <command> [--target T] [--config FILE] [--json]

Commands:
  status                  per target: events waiting, their bytes, the oldest one's age, dead letters
  dead [--limit N]        dead letters, oldest first: target, seq, device, event id, when, why
  redrive [seq…]          dead letters (all, those of --target, or those named) back to the end of their queue
  purge [seq…]            delete dead letters (all, those of --target, or those named)

The forward queue is <dataDir>/forward.db (dataDir from --config FILE, OUTPOST_GATEWAY_DATA_DIR,
or .outpost/gateway). --json prints JSON for scripts.`

const bad = (message: string): OutpostError => new OutpostError(ErrorCode.BAD_ARGUMENT, message)

/** Runs one `outpost forward` command and returns what it prints. @throws BAD_ARGUMENT for a wrong call, NOT_FOUND without a forward queue */
export function runForwardCommand(rest: string[], opts: { dataDir: string; target?: string; limit?: string; json?: boolean }, now: () => number = Date.now): string {
  const [verb, ...more] = rest
  const verbs = ['status', 'dead', 'redrive', 'purge']
  if (verb === undefined) throw bad('outpost forward: which command? status, dead, redrive or purge')
  if (!verbs.includes(verb)) throw bad(`outpost forward: unknown command "${verb.slice(0, 40)}"; expected ${verbs.join(', ')}`)
  const seqs = more.map((s) => {
    if (!/^[1-9]\d{0,15}$/.test(s)) throw bad(`outpost forward ${verb}: "${s.slice(0, 40)}" is not a dead letter's seq (a whole number, as \`outpost forward dead\` lists them)`)
    return Number(s)
  })
  if (seqs.length > 0 && (verb === 'status' || verb === 'dead')) throw bad(`outpost forward ${verb}: unexpected argument "${more[0]!.slice(0, 40)}"`)
  const file = path.join(opts.dataDir, 'forward.db')
  if (!existsSync(file)) throw new OutpostError(ErrorCode.NOT_FOUND, `no forward queue at ${file} (a gateway with forward targets configured creates it; or name the gateway's config with --config)`)
  const queue: ForwardQueue = openForwardQueue({ path: file, limits: {}, access: 'tool' })
  try {
    const print = (value: unknown, text: () => string): string => (opts.json === true ? JSON.stringify(value, null, 2) : text())
    const filter = { ...(opts.target === undefined ? {} : { target: opts.target }), ...(seqs.length === 0 ? {} : { seqs }) }
    switch (verb) {
      case 'status': {
        const names = (queue.database.db.prepare('SELECT DISTINCT target FROM queue UNION SELECT DISTINCT target FROM dead ORDER BY 1').pluck().all() as string[]).filter((t) => opts.target === undefined || t === opts.target)
        const rows = names.map((target) => {
          const b = queue.backlog(target)
          return { target, waiting: b.messages, bytes: b.bytes, oldestAgeS: b.oldestAt === undefined ? 0 : Math.round((now() - b.oldestAt) / 1000), dead: queue.deadCount(target) }
        })
        return print(rows, () => (rows.length === 0 ? 'nothing waiting, no dead letters' : rows.map((r) => `${r.target}: waiting ${r.waiting} (${r.bytes} bytes, oldest ${r.oldestAgeS} s), dead ${r.dead}`).join('\n')))
      }
      case 'dead': {
        const limit = Number(opts.limit ?? 100)
        const dead = queue.dead({ ...filter, limit }).map((d) => ({ target: d.target, seq: d.seq, device: d.device, id: d.id, subject: d.subject, failedAt: new Date(d.failedAt).toISOString(), reason: d.reason }))
        return print(dead, () => (dead.length === 0 ? 'no dead letters' : dead.map((d) => `${d.target}  ${d.seq}  ${d.device}  ${d.id}  ${d.failedAt}  ${d.reason}`).join('\n')))
      }
      case 'redrive': {
        const n = queue.redrive(filter)
        return print({ redriven: n }, () => `${n} dead letter${n === 1 ? '' : 's'} back in the forward queue`)
      }
      default: {
        const n = queue.purge(filter)
        return print({ purged: n }, () => `${n} dead letter${n === 1 ? '' : 's'} deleted`)
      }
    }
  } finally {
    queue.close()
  }
}
