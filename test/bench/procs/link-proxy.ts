// The cloud link of the forwarding bench's backlog run (forward.ts), in a process of its own: a
// TCP proxy in front of the target that the bench takes down and brings back. In the gateway's
// process it would read and write every forwarded byte on the gateway's own thread, which the
// raw client, connected directly, does not pay. Prints its port, then "down" after SIGHUP (every
// connection cut, not listening) and "up" after SIGUSR2 (listening again on the same port).
import { tcpProxy } from '../../helpers/tcp-proxy.js'

const proxy = await tcpProxy(process.argv[2]!)
process.on('SIGHUP', () => void proxy.down().then(() => process.stdout.write('down\n')))
process.on('SIGUSR2', () => void proxy.up().then(() => process.stdout.write('up\n')))
process.on('SIGTERM', () => void proxy.close().then(() => process.exit(0)))
// While the proxy is down nothing else keeps this process alive: this does, until SIGTERM.
setInterval(() => {}, 1 << 30)
process.stdout.write(`${new URL(proxy.url).port}\n`)
