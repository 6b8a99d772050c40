// ota@1: over-the-air flashing of a device started by the launcher, called through the gateway's
// command API like any device command (docs/build.md, "Over the air"). A transfer is a bundle
// directory in chunks: `begin` with its signed manifest, `chunk` for each piece of each file,
// `status` for what arrived (to resume), `commit` to verify it all and switch to it.
import * as v from 'valibot'
import { defineContract } from '../contract/index.js'

/** Largest chunk a sender may cut, bytes: in base64 it stays within a command's 252 KiB payload. */
export const MAX_CHUNK_BYTES = 176 * 1024
/** Smallest chunk, bytes. */
export const MIN_CHUNK_BYTES = 1024

const Count = v.pipe(v.number(), v.safeInteger(), v.minValue(0))
const Sha256 = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/))
/** Chosen by the sender (outpost flash: from the manifest's and signature's sha256); a file name on the device. */
const BundleId = v.pipe(v.string(), v.regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/))
const Slot = v.picklist(['a', 'b'])
const Bundle = { device: v.string(), version: v.string(), buildTime: v.string() }

/** What a device has of a transfer: per file, its chunk count and the chunks present. */
const Transfer = v.object({
  bundleId: v.string(),
  ...Bundle,
  chunkBytes: Count,
  files: v.array(v.object({ name: v.string(), size: Count, chunks: Count, present: v.array(Count) })),
  /** Chunks still to come, over all files. */
  missing: Count,
})

/** The last bundle committed over the air and what became of it (from the launcher's state.json). */
const Committed = v.object({
  bundleId: v.string(),
  ...Bundle,
  slot: Slot,
  switchedAt: v.string(),
  outcome: v.picklist(['pending', 'success', 'rolled-back']),
  reason: v.optional(v.string()),
})

/** The launcher's last outcome, as it wrote it in state.json. */
const Last = v.object({
  outcome: v.string(),
  at: v.string(),
  slot: v.nullable(v.string()),
  version: v.optional(v.string()),
  buildTime: v.optional(v.string()),
  reason: v.optional(v.string()),
})

export const otaContract = defineContract({
  name: 'ota',
  version: '1',
  description: 'Over-the-air flashing: a signed bundle in chunks, verified, installed into the inactive slot, restarted into.',
  commands: {
    /** Starts (or resumes, for the same bundle) a transfer; refuses a manifest not signed by a trusted key, or not for this Node, at once. */
    begin: {
      payload: v.object({
        bundleId: BundleId,
        /** manifest.json's text, exactly (its bytes are what is signed). */
        manifest: v.pipe(v.string(), v.maxLength(65_536)),
        /** manifest.sig's text. */
        signature: v.pipe(v.string(), v.maxLength(4_096)),
        files: v.pipe(v.array(v.object({ name: v.pipe(v.string(), v.maxLength(255)), size: Count, sha256: Sha256 })), v.maxLength(64)),
        chunkBytes: v.pipe(v.number(), v.safeInteger(), v.minValue(MIN_CHUNK_BYTES), v.maxValue(MAX_CHUNK_BYTES)),
      }),
      result: Transfer,
    },
    /** One piece of a file: `index` × chunkBytes from its start, base64, refused unless its bytes have the sha256 given; one sent again is taken once. */
    chunk: {
      payload: v.object({
        bundleId: BundleId,
        file: v.pipe(v.string(), v.maxLength(255)),
        index: Count,
        data: v.pipe(v.string(), v.maxLength(Math.ceil(MAX_CHUNK_BYTES / 3) * 4)),
        sha256: Sha256,
      }),
      result: v.object({ written: v.boolean(), missing: Count }),
    },
    /** The slot running, the transfer under way (of this bundle, when named), the last commit and its outcome, the launcher's last outcome. */
    status: {
      payload: v.object({ bundleId: v.optional(BundleId) }),
      result: v.object({
        running: v.object({ slot: v.nullable(v.string()), device: v.optional(v.string()), version: v.optional(v.string()), buildTime: v.optional(v.string()) }),
        transfer: v.nullable(Transfer),
        committed: v.nullable(Committed),
        last: v.nullable(Last),
      }),
    },
    /** Verifies the signature and every file, installs the bundle into the inactive slot, switches to it and restarts into it. */
    commit: {
      payload: v.object({ bundleId: BundleId }),
      result: v.object({ slot: Slot, previous: v.nullable(Slot), switchedAt: v.string(), restarting: v.boolean() }),
    },
  },
})
