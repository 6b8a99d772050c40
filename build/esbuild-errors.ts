// esbuild's failures as one line a user can act on: its message starts "Build failed with N
// errors:" and puts the reasons on the lines after, which a one-line report would cut away.

/** The first of esbuild's errors in `err`, where it is, and how many more; undefined when `err` is not esbuild's. */
export function esbuildErrorLine(err: unknown): string | undefined {
  const errors = (err as { errors?: { text: string; location?: { file: string; line: number } | null }[] }).errors ?? []
  const first = errors[0]
  if (first === undefined) return undefined
  const where = first.location ? `${first.location.file}:${first.location.line}: ` : ''
  const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : ''
  return `${where}${first.text}${more}`
}
