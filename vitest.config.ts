import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/bench/node_modules holds the bench's comparison systems (Moleculer, PURISTA, plainjob,
    // BullMQ and what they pull in). Their own test files, skipped ones among them, are not
    // Outpost's tests and are never collected.
    exclude: ['**/node_modules/**'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
})
