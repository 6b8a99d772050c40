import { describe, expect, it } from 'vitest'
import { createTopics, topicMatches, type Envelope } from '../../runtime/index.js'

describe('topic layout', () => {
  const t = createTopics()
  const base = { v: 1, id: 'm', inst: 'i', at: 1 } as const

  it('puts everything a device publishes under its own namespace', () => {
    const cmd: Envelope = { ...base, kind: 'command', src: 'dev-a', target: 'dev-b', service: 'thermo', version: '1', name: 'read' }
    const reply: Envelope = { ...base, kind: 'reply', src: 'dev-b', corr: 'm', replyTo: 'dev-a' }
    const event: Envelope = { ...base, kind: 'event', src: 'dev-b', service: 'thermo', version: '1', name: 'reading' }
    expect(t.topicOf(cmd)).toBe('ob/dev-a/cmd/dev-b/thermo/1/read')
    expect(t.topicOf(reply)).toBe('ob/dev-b/rep/dev-a')
    expect(t.topicOf(event)).toBe('ob/dev-b/evt/thermo/1/reading')
    expect(t.topicOf({ ...base, kind: 'presence', src: 'dev-b' })).toBe('ob/dev-b/status')
    expect(topicMatches(t.commandFilter('dev-b', 'thermo', '1'), t.topicOf(cmd))).toBe(true)
    expect(topicMatches(t.replyFilter('dev-a'), t.topicOf(reply))).toBe(true)
    expect(topicMatches(t.eventFilter({ event: 'reading' }), t.topicOf(event))).toBe(true)
    expect(topicMatches(t.eventFilter({ service: 'other' }), t.topicOf(event))).toBe(false)
  })

  it('gives the same command from two senders two topics, however often it is asked', () => {
    const cmd = (src: string): Envelope => ({ ...base, kind: 'command', src, target: 'dev-b', service: 'thermo', version: '1', name: 'read' })
    for (let i = 0; i < 3; i++) {
      expect(t.topicOf(cmd('dev-a'))).toBe('ob/dev-a/cmd/dev-b/thermo/1/read')
      expect(t.topicOf(cmd('dev-c'))).toBe('ob/dev-c/cmd/dev-b/thermo/1/read')
    }
    expect(t.topicOf({ ...cmd('dev-a'), version: '2' })).toBe('ob/dev-a/cmd/dev-b/thermo/2/read')
  })

  it('gives the same event from two senders two topics, however often it is asked', () => {
    const event = (src: string, name = 'reading'): Envelope => ({ ...base, kind: 'event', src, service: 'thermo', version: '1', name })
    for (let i = 0; i < 3; i++) {
      expect(t.topicOf(event('dev-a'))).toBe('ob/dev-a/evt/thermo/1/reading')
      expect(t.topicOf(event('dev-c'))).toBe('ob/dev-c/evt/thermo/1/reading')
      expect(t.topicOf(event('dev-a', 'alarm'))).toBe('ob/dev-a/evt/thermo/1/alarm')
    }
    expect(t.topicOf({ ...event('dev-a'), version: '2' })).toBe('ob/dev-a/evt/thermo/2/reading')
    expect(() => t.topicOf({ ...base, kind: 'event', src: 'dev-a', version: '1' } as Envelope)).toThrow(/needs "service"/)
  })

  it('matches MQTT wildcards as the specification says', () => {
    expect(topicMatches('a/+/c', 'a/b/c')).toBe(true)
    expect(topicMatches('a/+/c', 'a/b/c/d')).toBe(false)
    expect(topicMatches('a/#', 'a/b/c')).toBe(true)
    expect(topicMatches('a/b', 'a')).toBe(false)
  })

  it('refuses device ids that would escape their topic level', () => {
    expect(() => createTopics('a/b')).toThrow(/topic level/)
  })
})
