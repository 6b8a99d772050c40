// The local RabbitMQ (127.0.0.1:5672, guest/guest) stopped and started again by a test, with
// `rabbitmqctl stop_app` / `start_app`: the Erlang node stays, the broker application (its
// listeners, connections, queues) stops. `rabbitUp` is safe to call at any time, also when the
// broker never went down: tests call it in their cleanup so RabbitMQ is always left running.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import amqp from 'amqplib'

export const RABBIT_URL = 'amqp://guest:guest@127.0.0.1:5672'

const run = promisify(execFile)
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** `rabbitmqctl <args>`; its output, or throws with what it wrote. */
async function rabbitmqctl(args: string[], timeoutMs = 60_000): Promise<string> {
  try {
    return (await run('rabbitmqctl', args, { timeout: timeoutMs })).stdout
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string; message: string }
    throw new Error(`rabbitmqctl ${args.join(' ')} failed: ${x.message}\n${x.stdout ?? ''}${x.stderr ?? ''}`)
  }
}

/** One AMQP connection and channel opened and closed: the broker takes clients. */
export async function amqpAnswers(): Promise<boolean> {
  let conn: amqp.ChannelModel | undefined
  try {
    conn = await amqp.connect(RABBIT_URL, { timeout: 5_000 })
    conn.on('error', () => {})
    const ch = await conn.createChannel()
    await ch.close()
    return true
  } catch {
    return false
  } finally {
    await conn?.close().catch(() => {})
  }
}

/** Stops the broker application (`rabbitmqctl stop_app`); returns once it is stopped. */
export async function stopRabbitApp(): Promise<void> {
  await rabbitmqctl(['stop_app'])
}

/**
 * Starts the broker application (`rabbitmqctl start_app`, a no-op when it runs) and waits until it
 * has booted and port 5672 takes AMQP clients again.
 * @throws when it is not back within `ms`
 */
export async function rabbitUp(ms = 90_000): Promise<void> {
  const end = Date.now() + ms
  let last: unknown
  for (;;) {
    try {
      await rabbitmqctl(['start_app'])
      await rabbitmqctl(['await_startup'])
      // Booted; the listener may still be a moment behind.
      while (Date.now() < end) {
        if (await amqpAnswers()) return
        await sleep(250)
      }
    } catch (err) {
      last = err
    }
    if (Date.now() > end) throw new Error(`RabbitMQ did not come back within ${ms} ms: ${String(last)}`)
    await sleep(1_000)
  }
}
