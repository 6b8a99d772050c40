import { defaultServerConditions } from 'vite'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  // `outpost/...` imports resolve to the TypeScript sources (package.json exports, condition
  // outpost-source), as they do for tsc (tsconfig customConditions): no build needed to test them.
  ssr: { resolve: { conditions: ['outpost-source', ...defaultServerConditions] } },
  test: {
    include: ['test/**/*.test.ts'],
    // test/bench/node_modules holds the bench's comparison systems (Moleculer, PURISTA, plainjob,
    // BullMQ and what they pull in). Their own test files, skipped ones among them, are not
    // Outpost's tests and are never collected.
    exclude: ['**/node_modules/**'],
    // The CLI runs compiled code (dist/): it is rebuilt first when the sources are newer.
    globalSetup: ['test/package/global-setup.ts'],
    // Two test files at a time. Most of the suite waits on processes, brokers and timers, not on
    // the CPU: on 2 cores the whole suite took 19 minutes one file at a time and 11 with two
    // (vitest's default here was one), with no failure.
    maxWorkers: 2,
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
})
