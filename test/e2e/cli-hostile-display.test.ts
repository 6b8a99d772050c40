// The display device under the real CLI, readable logs on, and a client on the broker sending it
// what the outside tester sent (/tmp/attack-frames: inject.mjs, evts.mjs): escape codes and a
// forged line in a `show` text and an event's deviceId, a reading of Infinity, a sample result
// whose time no Date can hold.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import type { MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { startProcess } from '../helpers/device-process.js'
import { commandSlots, eventSlots, FIELD, rawDecoder, rawFrame } from '../helpers/raw-wire.js'
import { until } from '../helpers/wait.js'

describe('a display under hostile frames', () => {
  const cleanup = cleanupAfterEach()

  it('shows hostile text escaped on its own line, refuses readings that are no measurement, and keeps a true average', async () => {
    const broker: MqttBroker = await freshAedes()
    cleanup(() => broker.close())
    const dataDir = mkdtempSync(path.join(tmpdir(), 'outpost-hostile-display-'))
    cleanup(() => rmSync(dataDir, { recursive: true, force: true }))
    const display = startProcess('bin/outpost.js', ['device', 'display', '--id', 'display-9', '--url', broker.url, '--log-format', 'pretty'], { OUTPOST_DATA_DIR: dataDir })
    cleanup(() => display.kill('SIGTERM'))
    // Ready serves local work; commands from the broker need its subscriptions there.
    await display.waitFor('connected to the broker')

    const attacker = await mqtt.connectAsync(broker.url, { clientId: 'attacker', reconnectPeriod: 0 })
    cleanup(() => attacker.endAsync())
    const replies: unknown[][] = []
    attacker.on('message', (_t, buf) => void replies.push(rawDecoder.decode(buf) as unknown[]))
    await attacker.subscribeAsync('ob/+/rep/attacker', { qos: 1 })

    const forged = '\u001b[2J\u001b[31mX\u001b[0m\n13:00:00.000 [thermo-1 ] FATAL fake'
    const show = commandSlots({ src: 'attacker', target: 'display-9', service: 'display', name: 'show', payload: { text: forged } })
    await attacker.publishAsync('ob/attacker/cmd/display-9/display/1/show', rawFrame(show), { qos: 1 })
    await until(() => replies.some((r) => r[FIELD.corr] === show[FIELD.id]), 30_000)

    const evt = (name: string, payload: unknown): Promise<unknown> =>
      attacker.publishAsync(`ob/attacker/evt/thermo/1/${name}`, rawFrame(eventSlots({ src: 'attacker', service: 'thermo', name, payload })), { qos: 1 })
    await evt('sample.completed', { jobId: 'j', queue: 'thermo/sample', attempt: 1, output: { celsius: 1, at: 1e300, readings: 1, min: 1, max: 1 } })
    await evt('reading', { deviceId: '\u001b[31mred\u001b[0m', celsius: Infinity, ts: 1 })
    await evt('reading', { deviceId: 'thermo-x', celsius: 20, ts: Date.now() })
    await evt('reading', { deviceId: 'thermo-x', celsius: 21, ts: Date.now() })
    const heard = await display.waitFor('heard a reading event')
    await until(() => display.lines.filter((l) => l.includes('heard a reading event')).length === 2, 30_000)

    const out = display.lines
    expect(out.filter((l) => l.includes('heard a reading event')).map((l) => /average=(\S+)/.exec(l)?.[1])).toEqual(['20', '20.5'])
    expect(heard).not.toContain('null')
    // The forged text is shown, escaped, inside the display's own line; no line starts with it.
    expect(out.some((l) => l.includes('display shows') && l.includes('\\x1b[2J') && l.includes('\\n13:00:00.000 [thermo-1 ] FATAL fake'))).toBe(true)
    expect(out.some((l) => l.startsWith('13:00:00.000'))).toBe(false)
    expect(out.join('\n')).not.toMatch(/[\u001b\u009b]/)
    // Nothing threw in a handler.
    expect(out.join('\n')).not.toMatch(/RangeError|Invalid time value|INTERNAL/)
  }, 90_000)
})
