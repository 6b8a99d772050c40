// The stream and the queue these scripts read: those that gateway.yaml beside them names (or the
// gateway file OUTPOST_GATEWAY_CONFIG names), so that renaming them there is enough.
import { readFileSync } from 'node:fs'
import { parse } from 'yaml'

const file = process.env.OUTPOST_GATEWAY_CONFIG ?? new URL('./gateway.yaml', import.meta.url)
const targets = (parse(readFileSync(file, 'utf8')) as { forward: { targets: Record<string, { stream?: { name: string }; queue?: { name: string } }> } }).forward.targets

/** The JetStream stream of the `cloud` target. */
export const STREAM = targets.cloud!.stream!.name
/** The RabbitMQ queue of the `warehouse` target. */
export const QUEUE = targets.warehouse!.queue!.name
