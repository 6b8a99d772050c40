import { createMemoryBridge, createMemoryHub } from '../../runtime/index.js'
import { describeBridgeContract } from '../contracts/bridge.contract.js'

describeBridgeContract('memory', {
  async createNetwork() {
    const hub = createMemoryHub()
    return { bridge: (deviceId) => createMemoryBridge({ hub, deviceId }), dispose: async () => {} }
  },
})
