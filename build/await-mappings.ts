// terser's source map has no position for an `await`: it maps the tokens it thinks worth mapping
// (names, calls through their names, statements, literals), and `await` is not one. V8 names the
// `await` a function waits at in the async frames of a stack (`at async main (…)`), and a consumer
// then finds the mapping before it on the generated line, which in a one-line bundle may be of
// another source line altogether (a `try {` above). This adds, for each `await` the map does not
// cover, the original position of what follows it (the awaited expression, on the `await`'s own
// source line but for a multi-line operand), so that those frames name the right line.
import { decode, encode, type SourceMapSegment } from '@jridgewell/sourcemap-codec'

/** `await` as a keyword: not a part of a longer name, not a property after a dot. */
const AWAIT = /(?<![\w$.])await\b/g

/**
 * The map `mapText` of `code` with a segment at each `await` the map has none at. An `await` in a
 * string or a comment gets one too, which no stack ever points at.
 */
export function mapAwaits(code: string, mapText: string): string {
  const map = JSON.parse(mapText) as { mappings: string }
  const lines = decode(map.mappings)
  const codeLines = code.split('\n')
  let added = 0
  for (const [i, text] of codeLines.entries()) {
    const segments = lines[i]
    if (segments === undefined || segments.length === 0) continue
    let at = 0
    for (const m of text.matchAll(AWAIT)) {
      const col = m.index
      // Segments are in column order: move to the first at or after the `await`.
      while (at < segments.length && segments[at]![0] < col) at++
      if (at < segments.length && segments[at]![0] === col) continue
      const next = segments.slice(at).find((s) => s.length >= 4) as [number, number, number, number] | undefined
      if (next === undefined) continue
      const segment: SourceMapSegment = [col, next[1], next[2], next[3]]
      segments.splice(at, 0, segment)
      added++
    }
  }
  if (added === 0) return mapText
  map.mappings = encode(lines)
  return JSON.stringify(map)
}
