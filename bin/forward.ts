// `outpost forward`: the gateway's forward queue (<dataDir>/forward.db) from the command line:
// what waits for each cloud target, and the dead letters (events a target refused for good) to
// inspect, send again or delete. It opens the file as a tool, beside a running gateway, whose
// pump picks redriven events up with the next ones it sends (within a few seconds when idle).
import { existsSync } from 'node:fs'
import path from 'node:path'
import { openForwardQueue, type ForwardQueue } from '../gateway/forward/forward-queue.js'
import { ErrorCode, OutpostError } from '../runtime/errors.js'
import { meant } from './close-to.js'

export const FORWARD_HELP = `Usage: outpost forward <command> [--target T] [--config FILE] [--json]

Commands:
  status                  per target: events waiting, their bytes, the oldest one's age, dead letters
  dead [--limit N]        dead letters, oldest first: target, seq, device, event id, when, why
  redrive [seq…]          dead letters (all, those of --target, or those named) back to the end of their queue
  purge <seq…|--all>      delete the dead letters named, or with --all every one (of --target, if given);
                          without seqs or --all nothing is deleted

The forward queue is <dataDir>/forward.db (dataDir from --config FILE, OUTPOST_GATEWAY_DATA_DIR,
or .outpost/gateway). --json prints JSON for scripts.`

const bad = (message: string): OutpostError => new OutpostError(ErrorCode.BAD_ARGUMENT, message)

/** The commands of `outpost forward`. */
export const FORWARD_VERBS = ['status', 'dead', 'redrive', 'purge'] as const

/**
 * The word that stands for `--all` among the arguments of `outpost forward purge`: the command
 * line's option, passed on with the seqs (bin/cli-args.ts) so that the command sees it.
 */
export const PURGE_ALL = '--all'

/**
 * What a terminal acts on rather than shows (C0 and C1 controls, DEL, line and paragraph
 * separators, bidi controls). Dead letters hold what devices chose (an envelope id, an event
 * name in a subject) and what a target said about it: written as escapes in the text output, so
 * a device cannot clear the operator's screen or forge lines in `outpost forward dead`.
 */
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g
const shown = (s: string): string =>
  s.replace(CONTROLS, (c) => {
    const n = c.charCodeAt(0)
    return c === '\n' ? '\\n' : c === '\r' ? '\\r' : c === '\t' ? '\\t' : n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`
  })

/** The forward queue of a data folder, opened as a tool. @throws NOT_FOUND when there is none, STORE_* when it cannot be read */
function openQueue(dataDir: string): ForwardQueue {
  const file = path.join(dataDir, 'forward.db')
  if (!existsSync(file)) throw new OutpostError(ErrorCode.NOT_FOUND, `no forward queue at ${file} (a gateway with forward targets configured creates it; or name the gateway's config with --config)`)
  return openForwardQueue({ path: file, limits: {}, access: 'tool' })
}

/** Target names with rows in the queue or dead letters, sorted. */
const targetsIn = (queue: ForwardQueue): string[] => queue.database.db.prepare('SELECT DISTINCT target FROM queue UNION SELECT DISTINCT target FROM dead ORDER BY 1').pluck().all() as string[]

/**
 * Checks `--target`: a target of the configuration, or one that still has events or dead letters
 * in the forward queue. A misspelt name (`--target clod`) showed "nothing waiting", redrove and
 * purged nothing, and said so with exit code 0.
 * @throws BAD_ARGUMENT naming the targets there are
 */
export function checkForwardTarget(target: string, configured: readonly string[], dataDir: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(target)) throw bad(`--target "${shown(target.slice(0, 64))}" is not a target name (letters, digits, "_" or "-", as in the config's forward.targets)`)
  if (configured.includes(target)) return
  // No forward queue at all: the command says so (NOT_FOUND) when it runs.
  if (!existsSync(path.join(dataDir, 'forward.db'))) return
  const queue = openQueue(dataDir)
  let known: string[]
  try {
    known = targetsIn(queue)
  } finally {
    queue.close()
  }
  if (known.includes(target)) return
  const all = [...new Set([...configured, ...known])].sort()
  throw bad(`--target ${target}: no such target${all.length === 0 ? ' (the config names none and the forward queue holds none)' : `; expected one of ${all.join(', ')}`}`)
}

/**
 * Runs one `outpost forward` command and returns what it prints. `rest` is the verb and its
 * arguments; for `purge`, PURGE_ALL among them (or `opts.all`) asks for every dead letter.
 * @throws BAD_ARGUMENT for a wrong call, NOT_FOUND without a forward queue or for a seq that is no dead letter
 */
export function runForwardCommand(rest: string[], opts: { dataDir: string; target?: string; limit?: string; json?: boolean; all?: boolean }, now: () => number = Date.now): string {
  const [verb, ...words] = rest
  if (verb === undefined) throw bad('outpost forward: which command? status, dead, redrive or purge')
  if (!(FORWARD_VERBS as readonly string[]).includes(verb)) throw bad(`outpost forward: unknown command "${shown(verb.slice(0, 40))}"${meant(verb, FORWARD_VERBS)}; expected ${FORWARD_VERBS.join(', ')}`)
  const all = opts.all === true || words.includes(PURGE_ALL)
  const more = words.filter((w) => w !== PURGE_ALL)
  if (all && verb !== 'purge') throw bad(`--all is an option of outpost forward purge only, not of ${verb}`)
  if (more.length > 0 && (verb === 'status' || verb === 'dead')) throw bad(`outpost forward ${verb} takes no arguments (got "${shown(more[0]!.slice(0, 40))}")`)
  const seqs = more.map((s) => {
    if (!/^[1-9]\d{0,15}$/.test(s)) throw bad(`outpost forward ${verb}: "${shown(s.slice(0, 40))}" is not a dead letter's seq (a whole number, as \`outpost forward dead\` lists them)`)
    return Number(s)
  })
  // Was: `purge` without seqs deleted every dead letter, one word short of a named one.
  if (verb === 'purge' && seqs.length === 0 && !all) throw bad(`outpost forward purge: give the seqs of the dead letters to delete, or --all for every one${opts.target === undefined ? '' : ` of target ${opts.target}`}; nothing was deleted`)
  if (verb === 'purge' && seqs.length > 0 && all) throw bad('outpost forward purge: give seqs or --all, not both; nothing was deleted')
  const queue = openQueue(opts.dataDir)
  try {
    const print = (value: unknown, text: () => string): string => (opts.json === true ? JSON.stringify(value, null, 2) : text())
    const filter = { ...(opts.target === undefined ? {} : { target: opts.target }), ...(seqs.length === 0 ? {} : { seqs: [...new Set(seqs)] }) }
    // Named dead letters that are not there (a typo, or one purged already) are named before anything changes.
    if (seqs.length > 0) {
      const found = new Set(queue.dead({ ...filter, limit: seqs.length }).map((d) => d.seq))
      const missing = [...new Set(seqs)].filter((n) => !found.has(n))
      if (missing.length > 0) {
        throw new OutpostError(ErrorCode.NOT_FOUND, `no dead letter${missing.length === 1 ? '' : 's'} ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', …' : ''}${opts.target === undefined ? '' : ` of target ${opts.target}`} (see outpost forward dead); nothing was changed`)
      }
    }
    switch (verb) {
      case 'status': {
        const names = targetsIn(queue).filter((t) => opts.target === undefined || t === opts.target)
        const rows = names.map((target) => {
          const b = queue.backlog(target)
          return { target, waiting: b.messages, bytes: b.bytes, oldestAgeS: b.oldestAt === undefined ? 0 : Math.round((now() - b.oldestAt) / 1000), dead: queue.deadCount(target) }
        })
        return print(rows, () => (rows.length === 0 ? 'nothing waiting, no dead letters' : rows.map((r) => `${r.target}: waiting ${r.waiting} (${r.bytes} bytes, oldest ${r.oldestAgeS} s), dead ${r.dead}`).join('\n')))
      }
      case 'dead': {
        const limit = Number(opts.limit ?? 100)
        const dead = queue.dead({ ...filter, limit }).map((d) => ({ target: d.target, seq: d.seq, device: d.device, id: d.id, subject: d.subject, failedAt: new Date(d.failedAt).toISOString(), reason: d.reason }))
        const total = (opts.target === undefined ? targetsIn(queue) : [opts.target]).reduce((n, t) => n + queue.deadCount(t), 0)
        const hidden = total > dead.length ? `\n… ${total - dead.length} more (--limit N to see them)` : ''
        return print(dead, () => (dead.length === 0 ? 'no dead letters' : dead.map((d) => shown(`${d.target}  ${d.seq}  ${d.device}  ${d.id}  ${d.failedAt}  ${d.reason}`)).join('\n') + hidden))
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
