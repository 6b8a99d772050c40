// The gateway's HTTP face attacked from outside, against a real gateway process: the token on
// every route but /healthz whatever the path's spelling, oversized headers, and slowloris
// (thousands of connections that never finish their headers), which took every file descriptor
// of the process so that devices could no longer connect to the broker.
import { spawn } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import net from 'node:net'
import type { MqttClient } from 'mqtt'
import { afterEach, describe, expect, it } from 'vitest'
import { until } from '../helpers/wait.js'
import { HTTP_TOKEN, startGatewayProcess, type GatewayProcess } from './gateway-attack-process.js'

/** One raw HTTP/1.1 request (the path exactly as written), answered with its status code. */
async function rawStatus(url: string, requestLine: string, headers = ''): Promise<number> {
  const { port } = new URL(url)
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), '127.0.0.1', () => s.write(`${requestLine}\r\nHost: x\r\nConnection: close\r\n${headers}\r\n`))
    let text = ''
    s.setEncoding('utf8')
    s.on('data', (d: string) => (text += d))
    const status = (): number => Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? NaN)
    s.on('end', () => resolve(status()))
    // A refusal (431) may be followed by a reset while the rest of the request is still being sent.
    s.on('error', (err) => (Number.isNaN(status()) ? reject(err) : resolve(status())))
  })
}

describe('gateway under attack: the HTTP face', () => {
  let gw: GatewayProcess | undefined
  const sockets: net.Socket[] = []
  const clients: MqttClient[] = []
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy()
    for (const c of clients.splice(0)) c.end(true)
    await gw?.stop()
    gw = undefined
  })

  it('asks for the token on every route but /healthz, however the path is spelled', async () => {
    gw = await startGatewayProcess({ devices: ['dev-a'] })
    const paths = ['/metrics', '/readyz', '/devices', '/devices/dev-a', '/devices/%2e%2e', '/%2e%2e/metrics', '/healthz/../metrics', '/healthz/%2e%2e/metrics', '//metrics', '/metrics?x=1', '/healthz;/metrics', '/HEALTHZ', '/healthz/']
    for (const p of paths) expect(await rawStatus(gw.httpUrl, `GET ${p} HTTP/1.1`), p).toBe(401)
    expect(await rawStatus(gw.httpUrl, 'GET /metrics HTTP/1.1', 'Authorization: Bearer wrong-token-of-some-length\r\n')).toBe(401)
    expect(await rawStatus(gw.httpUrl, 'GET /metrics HTTP/1.1', `Authorization: Basic ${Buffer.from(`x:${HTTP_TOKEN}`).toString('base64')}\r\n`)).toBe(401)
    expect(await rawStatus(gw.httpUrl, 'GET /healthz HTTP/1.1')).toBe(200)
    expect(await rawStatus(gw.httpUrl, 'GET /metrics HTTP/1.1', `Authorization: Bearer ${HTTP_TOKEN}\r\n`)).toBe(200)
    // Headers past Node's limit are refused before any route runs.
    expect(await rawStatus(gw.httpUrl, 'GET /metrics HTTP/1.1', `X-Big: ${'y'.repeat(100_000)}\r\n`)).toBe(431)
    // A request line past it as well: a 100k-character path was a reset, never an answer.
    for (let i = 0; i < 3; i++) expect(await rawStatus(gw.httpUrl, `GET /devices/${'d'.repeat(100_000)} HTTP/1.1`, `Authorization: Bearer ${HTTP_TOKEN}\r\n`)).toBe(431)
    expect(gw.alive()).toBe(true)
  }, 60_000)

  it('slowloris: 2,000 connections that never finish their headers hold a bounded number of descriptors; probes are answered and devices still connect', async () => {
    gw = await startGatewayProcess({ devices: ['dev-a'] })
    const fds = (): number => readdirSync(`/proc/${gw!.child.pid}/fd`).length
    const before = fds()
    const { port } = new URL(gw.httpUrl)
    let connected = 0
    for (let i = 0; i < 2_000; i++) {
      const s = net.connect(Number(port), '127.0.0.1', () => {
        connected++
        s.write('GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ')
      })
      s.on('error', () => {})
      sockets.push(s)
      if (i % 200 === 199) await new Promise((r) => setTimeout(r, 20))
    }
    await until(() => connected === 2_000, 30_000)
    // The gateway keeps to its limit: a few hundred descriptors, not 2,000.
    await until(() => fds() - before < 600, 30_000)
    // Probes are still answered, while the slow sockets are held: a new connection takes the place
    // of the oldest one that is not being answered (all of them were closed at accept, and /healthz
    // failed for every probe until the slow ones ran out of time).
    for (let i = 0; i < 5; i++) {
      expect(await rawStatus(gw.httpUrl, 'GET /healthz HTTP/1.1')).toBe(200)
      expect(await rawStatus(gw.httpUrl, 'GET /readyz HTTP/1.1', `Authorization: Bearer ${HTTP_TOKEN}\r\n`)).toBe(200)
    }
    const a = await gw.connect('dev-a')
    clients.push(a)
    expect(a.connected).toBe(true)
    expect(gw.alive()).toBe(true)
  }, 60_000)

  it('no token, answers never read: 400 connections that pipeline probes and never read what comes back hold neither the connections nor the memory', async () => {
    gw = await startGatewayProcess({ devices: ['dev-a'] })
    const fds = (): number => readdirSync(`/proc/${gw!.child.pid}/fd`).length
    const before = fds()
    const { port } = new URL(gw.httpUrl)
    // A plain client (Python's sockets, not Node's): a small receive buffer and segment size, as
    // on a slow link, so that the answers wait in the gateway and not in the kernel.
    const script = [
      'import socket, sys, time',
      'port, n, k = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])',
      'req = b"GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" * k',
      'socks = []',
      'for i in range(n):',
      '    s = socket.socket()',
      '    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)',
      '    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)',
      '    s.connect(("127.0.0.1", port))',
      '    s.setblocking(False)',
      '    try: s.send(req)',
      '    except BlockingIOError: pass',
      '    socks.append(s)',
      '    time.sleep(0.005)',
      'print("opened", flush=True)',
      'time.sleep(60)',
    ].join('\n')
    const attacker = spawn('python3', ['-c', script, port!, '400', '1000'], { stdio: ['ignore', 'pipe', 'inherit'] })
    let said = ''
    attacker.stdout.on('data', (d: Buffer) => void (said += d.toString()))
    try {
      await until(() => said.includes('opened'), 30_000)
      // Probes answered while the attacker holds what it could; the gateway keeps to its limit.
      for (let i = 0; i < 5; i++) expect(await rawStatus(gw.httpUrl, 'GET /healthz HTTP/1.1')).toBe(200)
      await until(() => fds() - before < 300, 30_000)
      const rssMb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${gw.child.pid}/status`, 'utf8'))![1]) / 1024
      expect(rssMb).toBeLessThan(400)
      const a = await gw.connect('dev-a')
      clients.push(a)
      expect(a.connected).toBe(true)
      expect(gw.alive()).toBe(true)
    } finally {
      attacker.kill('SIGKILL')
    }
  }, 90_000)
})
