import net from 'node:net'

/** A TCP proxy in front of a broker: lets a test lose connections (no DISCONNECT sent) or the broker's address. */
export interface TcpProxy {
  /** `mqtt://127.0.0.1:<port>` of the proxy. */
  readonly url: string
  /** Destroys every connection through the proxy, as a lost network would; new ones are taken. */
  cut(): void
  /** Cuts every connection and stops listening: to its clients the broker is gone. */
  down(): Promise<void>
  /** Listens again on the same port. */
  up(): Promise<void>
  /** Nothing moves either way any more, and every connection stays open (a stalled link); until `flow`. */
  stall(): void
  /** Bytes move again after a `stall`. */
  flow(): void
  close(): Promise<void>
}

/** Starts a proxy on a free port of 127.0.0.1 that forwards to `target` (`mqtt://host:port`). */
export async function tcpProxy(target: string): Promise<TcpProxy> {
  const to = new URL(target)
  const sockets = new Set<net.Socket>()
  const server = net.createServer({ noDelay: true }, (inbound) => {
    const outbound = net.connect({ host: to.hostname, port: Number(to.port) })
    outbound.setNoDelay(true)
    for (const s of [inbound, outbound]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => {})
    }
    inbound.pipe(outbound)
    outbound.pipe(inbound)
    inbound.on('close', () => outbound.destroy())
    outbound.on('close', () => inbound.destroy())
  })
  const listen = (port: number): Promise<void> => new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()))
  await listen(0)
  const port = (server.address() as net.AddressInfo).port
  const cut = (): void => {
    for (const s of sockets) s.destroy()
  }
  let listening = true
  const down = async (): Promise<void> => {
    if (!listening) return
    listening = false
    const closed = new Promise<void>((r) => server.close(() => r()))
    cut()
    await closed
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    cut,
    down,
    async up() {
      if (listening) return
      await listen(port)
      listening = true
    },
    close: down,
    stall() {
      for (const s of sockets) s.pause()
    },
    flow() {
      for (const s of sockets) s.resume()
    },
  }
}
