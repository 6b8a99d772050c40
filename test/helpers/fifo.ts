// A FIFO standing for a log reader that stops reading: the reader is there (a write never fails
// with EPIPE) but takes nothing until the test reads it, as a reader that came back.
import { execFileSync } from 'node:child_process'
import { closeSync, constants, openSync, readSync, writeSync } from 'node:fs'
import path from 'node:path'

/** A FIFO in `dir`, its read end held without reading; `writeEnd` to give a process as its stdout. */
export function unreadFifo(dir: string): { writeEnd: number; readFor(ms: number, bytesPerTick?: number): Promise<string>; fill(): void; close(): void } {
  const fifo = path.join(dir, 'stdout.fifo')
  execFileSync('mkfifo', [fifo])
  const readEnd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK)
  const writeEnd = openSync(fifo, 'w')
  return {
    writeEnd,
    /**
     * Reads for `ms`, as a reader that came back: what arrived. With `bytesPerTick`, as a slow
     * reader: that many bytes at most, then 100 ms of nothing.
     */
    async readFor(ms, bytesPerTick) {
      const chunks: Buffer[] = []
      const chunk = Buffer.alloc(bytesPerTick ?? 65_536)
      const until = Date.now() + ms
      while (Date.now() < until) {
        let n = 0
        try {
          n = readSync(readEnd, chunk, 0, chunk.length, null)
        } catch (err) {
          if ((err as { code?: string }).code !== 'EAGAIN') throw err
        }
        if (n > 0) chunks.push(Buffer.from(chunk.subarray(0, n)))
        if (n === 0 || bytesPerTick !== undefined) await new Promise((r) => setTimeout(r, bytesPerTick === undefined ? 10 : 100))
      }
      return Buffer.concat(chunks).toString()
    },
    /** Fills the pipe to the last byte (dots, no line end), as by a reader that stopped before the process started. */
    fill() {
      const filler = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK)
      try {
        for (;;) writeSync(filler, Buffer.alloc(4_096, 0x2e))
      } catch (err) {
        if ((err as { code?: string }).code !== 'EAGAIN') throw err
      } finally {
        closeSync(filler)
      }
    },
    close() {
      closeSync(readEnd)
      closeSync(writeEnd)
    },
  }
}
