// Inside the repository, `outpost/…` is the package naming itself (package.json exports). Under
// vitest it resolves to the TypeScript sources (condition outpost-source in vitest.config.ts):
// the very modules that relative imports load, so a test by package name needs no build.
import { describe, expect, it } from 'vitest'
import * as bridges from 'outpost/bridges'
import * as contracts from 'outpost/contracts'
import * as gateway from 'outpost/gateway'
import * as runtime from 'outpost/runtime'
import * as memoryStores from 'outpost/stores/memory'
import * as sqliteStores from 'outpost/stores/sqlite'
import { startGateway } from '../../gateway/index.js'
import { createMemoryBridge } from '../../runtime/bridges/memory/memory-bridge.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { defineContract } from '../../runtime/contract/index.js'
import { createRuntime } from '../../runtime/index.js'
import { createMemoryStateStore } from '../../runtime/stores/memory/memory-state-store.js'
import { openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'

describe('outpost/… inside the repository', () => {
  it('is the sources, module for module', () => {
    expect(runtime.createRuntime).toBe(createRuntime)
    expect(runtime.defineContract).toBe(defineContract)
    expect(contracts.defineContract).toBe(defineContract)
    expect(bridges.createMemoryBridge).toBe(createMemoryBridge)
    expect(runtime.createMemoryBridge).toBe(createMemoryBridge)
    expect(bridges.createMqttBridge).toBe(createMqttBridge)
    expect(memoryStores.createMemoryStateStore).toBe(createMemoryStateStore)
    expect(runtime.createMemoryStateStore).toBe(createMemoryStateStore)
    expect(sqliteStores.openDeviceDatabase).toBe(openDeviceDatabase)
    expect(gateway.startGateway).toBe(startGateway)
  })
})
