// Broker URLs may carry credentials (mqtt://user:password@host:port). Whatever the CLI, a device
// or the gateway logs or prints goes through here first, so a password never reaches a log file,
// a terminal's scrollback or a bug report.

/** `scheme://userinfo@`: up to the last `@` before the host (a raw `@` in a password included). */
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#]*)@/gi

/**
 * Text (a URL, or a message that contains URLs) with the password of every `scheme://user:password@`
 * written as `***`; the user name stays, to tell which account was meant.
 */
export function redactUrl(text: string): string {
  return text.replace(USERINFO, (_m, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':')
    return `${scheme}${colon < 0 ? userinfo : `${userinfo.slice(0, colon)}:***`}@`
  })
}
