// The headers of one forwarded NATS message, written as the NATS protocol carries them
// ("NATS/1.0", then one "Name: value" line each, then an empty line). nats.js's own headers
// object (a Map of arrays, a canonical form of each name computed and the list of names copied at
// every set) made four of every ten bytes the gateway allocated while forwarding: a message's
// headers are known all at once here, so they are checked and written in one pass. What is
// accepted and what is written are nats.js's: `publish` calls only `encode()` on the object.
import type { MsgHdrs } from '@nats-io/transport-node'

const encoder = new TextEncoder()

/** A header name NATS accepts: printable ASCII (33-126), no colon. @throws Error naming the first character that is not */
function checkName(name: string): void {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i)
    if (c === 58 || c < 33 || c > 126) throw new Error(`header '${name[i]}' is not a valid character in a header name`)
  }
}

/** A header value as NATS carries it: trimmed, without CR or LF. @throws Error for a value with either */
function cleanValue(value: string): string {
  if (/[\r\n]/.test(value)) throw new Error('header values cannot contain \\r or \\n')
  return value.trim()
}

/**
 * Headers for `publish`: `headers` in their order, then `last` in theirs; a name given again
 * replaces the earlier value and moves to the place of the later one (as nats.js's `set`).
 * @throws Error for a name or value NATS cannot carry
 */
export function natsMessageHeaders(headers: Readonly<Record<string, string>>, last: readonly (readonly [string, string])[]): MsgHdrs {
  const names: string[] = []
  const values: string[] = []
  const put = (name: string, value: string): void => {
    checkName(name)
    const v = cleanValue(value)
    const at = names.indexOf(name)
    if (at >= 0) {
      names.splice(at, 1)
      values.splice(at, 1)
    }
    names.push(name)
    values.push(v)
  }
  for (const name of Object.keys(headers)) put(name, headers[name]!)
  for (const [name, value] of last) put(name, value)
  if (names.length === 0) return { encode: () => new Uint8Array(0) } as unknown as MsgHdrs
  let text = 'NATS/1.0'
  for (let i = 0; i < names.length; i++) text += `\r\n${names[i]}: ${values[i]}`
  const bytes = encoder.encode(`${text}\r\n\r\n`)
  return { encode: () => bytes } as unknown as MsgHdrs
}
