// The command every system runs: validate {deviceId, reading, ts}, answer {ok: true, n}.
import * as v from 'valibot'
import { defineContract, defineService } from '../../runtime/index.js'

export const ingestContract = defineContract({
  name: 'ingest',
  version: '1',
  commands: {
    add: {
      payload: v.object({ deviceId: v.string(), reading: v.number(), ts: v.number() }),
      result: v.object({ ok: v.literal(true), n: v.number() }),
    },
  },
})

export function ingestService() {
  let n = 0
  return defineService(ingestContract, { commands: { add: () => ({ ok: true as const, n: ++n }) } })
}

let seq = 0
/** A fresh payload per call (as a real caller would build one). */
export const payload = (): { deviceId: string; reading: number; ts: number } => ({ deviceId: 'dev-17', reading: 21.5 + (seq++ % 10), ts: 1_732_350_000_000 + seq })
