import { systemClock, UNREF, type Clock } from '../ports/clock.js'

/** Something that must happen at a deadline unless removed first. */
export interface DeadlineEntry {
  deadline: number
  /** Set by the tracker while the entry is waiting; do not touch. */
  tracked?: boolean
  expire(): void
}

/** Tracks deadlines with one timer for all of them (a timer per call costs more than the call). */
export interface DeadlineTracker {
  add(entry: DeadlineEntry): void
  remove(entry: DeadlineEntry): void
  readonly size: number
}

/**
 * Creates a deadline tracker. Entries sit in an array (a Set of objects would give each one an
 * identity hash, which costs more than the rest of a call); removal only flags the entry, and
 * the array is compacted once flagged entries outnumber live ones. The single timer, on `clock`,
 * is armed for the earliest deadline.
 */
export function createDeadlineTracker(clock: Clock = systemClock): DeadlineTracker {
  let queue: DeadlineEntry[] = []
  let live = 0
  let cancel: (() => void) | undefined
  let armedFor = Number.POSITIVE_INFINITY
  const arm = (at: number): void => {
    cancel?.()
    armedFor = at
    // Unref'd: a deadline alone does not keep a process alive (a connection or a handler does).
    cancel = clock.setTimer(at, sweep, UNREF)
  }
  const compact = (): void => {
    queue = queue.filter((e) => e.tracked === true)
  }
  const sweep = (): void => {
    cancel = undefined
    armedFor = Number.POSITIVE_INFINITY
    const t = clock.now()
    const due = queue
    queue = []
    let next = Number.POSITIVE_INFINITY
    for (const e of due) {
      if (e.tracked !== true) continue
      if (e.deadline <= t) {
        e.tracked = false
        live--
        e.expire()
      } else {
        queue.push(e)
        if (e.deadline < next) next = e.deadline
      }
    }
    if (next !== Number.POSITIVE_INFINITY && next < armedFor) arm(next)
  }
  return {
    add(entry) {
      entry.tracked = true
      queue.push(entry)
      live++
      if (entry.deadline < armedFor) arm(entry.deadline)
      if (queue.length > 2 * live + 1024) compact()
    },
    remove(entry) {
      // The armed timer stays: re-arming per call would cost a timer per call again. When it
      // fires with nothing due it re-arms for the earliest remaining deadline, if any.
      if (entry.tracked === true) {
        entry.tracked = false
        live--
      }
    },
    get size() {
      return live
    },
  }
}
