import { systemClock, UNREF, type Clock } from '../ports/clock.js'

/** Something that must happen at a deadline unless removed first. */
export interface DeadlineEntry {
  deadline: number
  /** Set by the tracker while the entry is waiting; do not touch. */
  tracked?: boolean
  /** Set by the tracker: when the deadline falls on the clock's monotonic time; do not touch. */
  due?: number
  expire(): void
}

/** Tracks deadlines with one timer for all of them (a timer per call costs more than the call). */
export interface DeadlineTracker {
  /** Tracks `entry` from `now` (the clock's time its deadline was set against) until its deadline or `remove`. */
  add(entry: DeadlineEntry, now: number): void
  remove(entry: DeadlineEntry): void
  readonly size: number
}

/**
 * Creates a deadline tracker. Entries sit in an array (a Set of objects would give each one an
 * identity hash, which costs more than the rest of a call); removal only flags the entry, and
 * the array is compacted once flagged entries outnumber live ones. The single timer, on `clock`,
 * is armed for the earliest deadline.
 *
 * Deadlines are times of the clock (they travel in envelopes), but waiting for one does not move
 * with it: each entry is due `deadline - now` after it was added, on the clock's monotonic time
 * (when the clock has one). A device whose clock is set back an hour while a call waits still
 * times the call out at its deadline, not an hour later; one set forward does not time out every
 * call at once.
 */
export function createDeadlineTracker(clock: Clock = systemClock): DeadlineTracker {
  const mono: () => number = clock.monotonic === undefined ? () => clock.now() : clock.monotonic.bind(clock)
  const steady = clock.monotonic !== undefined
  let queue: DeadlineEntry[] = []
  let live = 0
  let cancel: (() => void) | undefined
  let armedFor = Number.POSITIVE_INFINITY
  /** Arms the timer for `due` (monotonic time). */
  const arm = (due: number): void => {
    cancel?.()
    armedFor = due
    // Unref'd: a deadline alone does not keep a process alive (a connection or a handler does).
    cancel = clock.setTimer(steady ? clock.now() + (due - mono()) : due, sweep, UNREF)
  }
  const compact = (): void => {
    queue = queue.filter((e) => e.tracked === true)
  }
  const sweep = (): void => {
    cancel = undefined
    armedFor = Number.POSITIVE_INFINITY
    const t = mono()
    const waiting = queue
    queue = []
    let next = Number.POSITIVE_INFINITY
    for (const e of waiting) {
      if (e.tracked !== true) continue
      if (e.due! <= t) {
        e.tracked = false
        live--
        e.expire()
      } else {
        queue.push(e)
        if (e.due! < next) next = e.due!
      }
    }
    if (next !== Number.POSITIVE_INFINITY && next < armedFor) arm(next)
  }
  return {
    add(entry, now) {
      entry.tracked = true
      entry.due = steady ? mono() + (entry.deadline - now) : entry.deadline
      queue.push(entry)
      live++
      if (entry.due < armedFor) arm(entry.due)
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
