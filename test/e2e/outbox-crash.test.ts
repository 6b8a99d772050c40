// kill -9 a device while it writes events into its outbox (broker unreachable), 50 times:
// every event whose emit returned is in the outbox afterwards, exactly once, in order.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createEnvelopeCodec } from '../../runtime/index.js'
import { createSqliteOutbox, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { buildHelperProcess } from '../helpers/processes.js'

const KILLS = 50

describe('crash safety of the outbox', () => {
  let dir: string
  let script: string
  let deadPort: number
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'outpost-crash-'))
    script = await buildHelperProcess('outbox-writer')
    const s = net.createServer()
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()))
    deadPort = (s.address() as net.AddressInfo).port
    await new Promise<void>((r) => s.close(() => r())) // nothing listens there now
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it(`loses no committed event across ${KILLS} SIGKILLs`, async () => {
    const dbPath = path.join(dir, 'writer.db')
    let confirmed = -1
    for (let k = 0; k < KILLS; k++) {
      const child = spawn(process.execPath, [script, dbPath, String(deadPort)], { stdio: ['ignore', 'pipe', 'inherit'] })
      let buf = ''
      let ready = false
      const killAfter = 20 + Math.floor(Math.random() * 120)
      await new Promise<void>((resolve) => {
        child.stdout.on('data', (d: Buffer) => {
          buf += d.toString()
          const lines = buf.split('\n')
          buf = lines.pop()!
          for (const line of lines) {
            if (line === 'ready') {
              if (!ready) setTimeout(() => child.kill('SIGKILL'), killAfter)
              ready = true
            } else if (line !== '') confirmed = Math.max(confirmed, Number(line))
          }
        })
        child.once('exit', () => resolve())
      })
    }
    expect(confirmed).toBeGreaterThan(KILLS) // it did write between the kills

    const database = openDeviceDatabase({ path: dbPath })
    const outbox = createSqliteOutbox(database)
    const codec = createEnvelopeCodec()
    const numbers: number[] = []
    for (let after = 0; ; ) {
      const batch = outbox.peek(after, 5_000)
      if (batch.length === 0) break
      for (const e of batch) {
        const d = codec.decode(e.frame)
        expect(d.ok).toBe(true)
        if (d.ok) numbers.push((d.envelope.payload as { n: number }).n)
        after = e.seq
      }
    }
    database.close()
    // 0…confirmed all there, once each, in order; at most one more that was committed but not yet reported.
    expect(numbers.slice(0, confirmed + 1)).toEqual(Array.from({ length: confirmed + 1 }, (_, i) => i))
    expect(numbers.length - (confirmed + 1)).toBeLessThanOrEqual(1)
  }, 120_000)
})
