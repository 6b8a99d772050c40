// "Did you mean": the name a mistyped word most likely stands for.

/** The command `word` is most likely a typo of (one edit away, two for longer names, or the same letters swapped), for "did you mean". */
export function closeTo(word: string, names: readonly string[]): string | undefined {
  const distance = (a: string, b: string): number => {
    let prev = Array.from({ length: b.length + 1 }, (_, i) => i)
    for (let i = 1; i <= a.length; i++) {
      const cur = [i]
      for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = cur
    }
    return prev[b.length]!
  }
  const sameLetters = (a: string, b: string): boolean => [...a].sort().join('') === [...b].sort().join('')
  return names.find((n) => distance(word, n) <= (n.length > 4 ? 2 : 1) || sameLetters(word, n))
}

/** ` (did you mean <name>?)` when `word` is most likely a typo of one of `names`; else nothing. */
export function meant(word: string, names: readonly string[]): string {
  const near = closeTo(word, names)
  return near === undefined ? '' : ` (did you mean ${near}?)`
}
