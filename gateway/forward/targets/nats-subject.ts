// What a NATS subject may be when published to, for the forwarder (each event's subject) and for
// the config check (the subject template, before the gateway starts). No dependencies.

/** Why a subject cannot be published to (empty token, wildcard, whitespace), or undefined. */
export function subjectProblem(subject: string): string | undefined {
  if (subject === '') return 'it is empty'
  if (/\s/.test(subject)) return 'it contains whitespace'
  const tokens = subject.split('.')
  if (tokens.some((t) => t === '')) return 'it has an empty token'
  if (tokens.some((t) => t === '*' || t === '>')) return 'it has a wildcard'
  return undefined
}
