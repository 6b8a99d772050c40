import net from 'node:net'
import { Aedes } from 'aedes'

/** A plain aedes on a free port with no limits of Outpost's gateway: a broker as a third party might run it. */
export interface BareAedes {
  readonly aedes: Aedes
  readonly url: string
  close(): Promise<void>
}

/** Starts aedes with its defaults (no packet size limit) on 127.0.0.1 and a free port (or `port`, to start one again where it was). */
export async function bareAedes(port = 0): Promise<BareAedes> {
  const aedes = await Aedes.createBroker()
  const sockets = new Set<net.Socket>()
  const server = net.createServer({ noDelay: true }, (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    aedes.handle(s)
  })
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()))
  const bound = (server.address() as net.AddressInfo).port
  let closed: Promise<void> | undefined
  return {
    aedes,
    url: `mqtt://127.0.0.1:${bound}`,
    close: () =>
      (closed ??= (async () => {
        const stopped = new Promise<void>((r) => server.close(() => r()))
        for (const s of sockets) s.destroy()
        await stopped
        await new Promise<void>((r) => aedes.close(() => r()))
      })()),
  }
}
