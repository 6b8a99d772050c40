/** Outpost for cloud services (`outpost/cloud`): typed calls to device commands through a gateway's NATS front end, and the events it forwarded. */
export { createCloudClient, readForwarded, type CloudCallOptions, type CloudClient, type CloudClientOptions, type ForwardedEvent } from './cloud-client.js'
