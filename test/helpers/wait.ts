import net from 'node:net'

/** Polls `check` until it holds. @throws after `ms` */
export async function until(check: () => boolean, ms = 5_000, what?: string): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error(what === undefined ? 'condition not met in time' : `${what}: not so after ${ms} ms`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** A TCP port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()))
  const port = (s.address() as net.AddressInfo).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}
