// Builds the benchmark into plain JavaScript (esbuild, without keepNames) so that what is
// measured is the code a device runs, not tsx's development transform: tsx keeps function
// names by wrapping every closure creation in a defineProperty call, which alone cost ~3 % here.
import { build } from 'esbuild'

export async function buildBench(root) {
  await build({
    absWorkingDir: root,
    entryPoints: ['test/bench/bench.ts', 'test/bench/procs/broker.ts', 'test/bench/procs/responder.ts', 'test/bench/procs/caller.ts', 'test/bench/procs/drain.ts', 'test/bench/procs/backlog.ts', 'test/bench/procs/inproc.ts', 'test/bench/procs/queue.ts', 'test/bench/procs/codec.ts', 'test/bench/procs/gateway-broker.ts', 'test/bench/procs/gateway-load.ts', 'test/bench/procs/gateway-storm.ts', 'test/bench/procs/event-publisher.ts', 'test/bench/procs/link-proxy.ts'],
    outdir: 'test/bench/.build',
    outbase: 'test/bench',
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    packages: 'external', // node_modules resolve at run time from test/bench (baselines) and the root
    sourcemap: 'linked',
    logLevel: 'warning',
  })
}
