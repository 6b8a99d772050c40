/** The gateway's own client id on its broker (its monitor). */
export const GATEWAY_CLIENT_ID = 'gateway'

/** Device ids a device may not take: the gateway's own clients use them, and two clients with one id take each other's session. */
export const RESERVED_DEVICE_IDS: readonly string[] = [GATEWAY_CLIENT_ID]
