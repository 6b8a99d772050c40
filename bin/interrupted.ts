// Ctrl-C (or SIGTERM) during a command with a progress display: listr2's own handler ends the
// process with exit code 127 ("command not found" to a shell) and says nothing. These commands
// say in one line what the interruption left, and exit as a signal ends a process (128 + its number).
import { constants } from 'node:os'

/** Until the returned function is called, SIGINT and SIGTERM end the process with one line saying `left`. */
export function sayWhenInterrupted(left: string): () => void {
  const onSignal = (signal: NodeJS.Signals): void => {
    // The cursor the progress display hid, back; its last line ended.
    if (process.stdout.isTTY === true) process.stdout.write('\x1b[?25h\n')
    process.stderr.write(`outpost: interrupted (${signal}): ${left}\n`)
    process.exit(128 + constants.signals[signal])
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  return () => {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
