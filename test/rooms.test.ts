import { describe, expect, it } from 'vitest'
import { readSources, REPO_ROOT } from './layers-check.js'

// Rooms a newcomer can find (issue 12): a source file over this many lines holds more than one
// concern; split it by concern (see the rooms of gateway/persistence/ or runtime/bridges/mqtt/).
const MAX_LINES = 400
/**
 * Files that must stay one file, and why. The device launcher is copied onto a device by itself
 * (build/flash.ts, launcherCode) and runs there from a folder holding nothing else: it may import
 * only node: modules, and a split would need a bundling step in every flash.
 */
const ONE_FILE: Record<string, string> = {
  'runtime/launcher/launcher.ts': 'copied onto devices as a single file',
}

const linesOf = (text: string): number => (text === '' ? 0 : text.split('\n').length - (text.endsWith('\n') ? 1 : 0))

describe('rooms', () => {
  it(`no source file in runtime/, gateway/, devices/, build/, bin/ or examples/ is over ${MAX_LINES} lines`, () => {
    const files = readSources(REPO_ROOT)
    expect(files.length).toBeGreaterThan(100)
    const over = files.filter((f) => linesOf(f.text) > MAX_LINES && ONE_FILE[f.path] === undefined).map((f) => `${f.path}: ${linesOf(f.text)} lines`)
    expect(over).toEqual([])
    // An exception that no longer holds (the file was split, moved or shortened) is taken out.
    for (const path of Object.keys(ONE_FILE)) expect(files.some((f) => f.path === path && linesOf(f.text) > MAX_LINES), path).toBe(true)
  })

  it('counts lines as an editor shows them', () => {
    expect(linesOf('')).toBe(0)
    expect(linesOf('a\n')).toBe(1)
    expect(linesOf('a\nb')).toBe(2)
    expect(linesOf('a\nb\n')).toBe(2)
  })
})
