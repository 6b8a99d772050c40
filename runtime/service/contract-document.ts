// The contract document a runtime announces: for every service it serves, the JSON Schema of each
// command's payload and result and of each event's payload, converted from the valibot schemas
// with @valibot/to-json-schema, published retained on `<prefix>/<device>/contract` (kind
// `contract`, runtime/wire/README.md). A gateway checks cloud callers' payloads against it.
//
// The document must never refuse what the device takes. The converter leaves a part it cannot
// express open (its `errorMode: 'ignore'`), and before it runs, each schema is reduced to what
// the device checks on the input as it arrives:
// - a pipe stops at its first transformation (`trim`, `toLowerCase`, `transform`, …) or second
//   schema: what follows checks a changed value, not the caller's;
// - `fallback` takes any input (a failing one becomes the fallback value): left open;
// - a `regex` with flags (JSON Schema patterns have none) is dropped;
// - `variant` becomes `anyOf`, not the converter's `oneOf` (two options may both match);
// - defaults are left out (the converter would call a default function), and so are `examples`
//   and metadata beyond title and description (metadata keys land in the schema as keywords).
// The converter (contract-schemas.ts with @valibot/to-json-schema, about 17 KB minified) is
// imported when the first document is built, after the runtime has started, and only by a
// runtime that serves a command or an event. A device bundle has no converter: its build converts
// the contracts the device's code defines and puts the result into the bundle (a table, below).
import type { AnyContract } from '../contract/contract.js'
import type { ServiceDefinition } from '../contract/service.js'
import { errorMessage, ErrorCode, isOutpostError } from '../errors.js'
import { CONTRACT_VERSION, ENVELOPE_VERSION, MAX_CONTRACT_BYTES, type ContractPayload, type ContractService } from '../wire/envelope.js'
import type { RuntimeCore } from './runtime-core.js'

/** The JSON Schema dialect of every schema in a document. */
export const CONTRACT_DIALECT = 'draft-07'

/** The services a runtime serves that have a command or an event; a document names only these. */
const served = (defs: readonly ServiceDefinition[]): ServiceDefinition[] =>
  defs.filter((d) => Object.keys(d.contract.commands).length > 0 || Object.keys(d.contract.events).length > 0)

/**
 * The table a device bundle carries in place of the converter (build/contract-table.ts puts it
 * there): the document's part for each contract defined in the device's code, by
 * `<name>@<version>`. Undefined when running from sources.
 */
declare const __OUTPOST_CONTRACT_TABLE__: Readonly<Record<string, ContractService>> | undefined
const BUNDLED_TABLE = typeof __OUTPOST_CONTRACT_TABLE__ === 'undefined' ? undefined : __OUTPOST_CONTRACT_TABLE__

/** Loads the converter (contract-schemas.ts); in a bundle, a stand-in whose `contractServiceOf` is undefined. */
export type SchemasLoader = () => Promise<{ contractServiceOf?: (contract: AnyContract) => ContractService }>
const loadSchemas: SchemasLoader = () => import('./contract-schemas.js')

const sameNames = (a: Record<string, unknown>, b: Record<string, unknown>): boolean => {
  const ka = Object.keys(a)
  return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k))
}

/** What a document was built from: `unknown` names the services a bundle had no table entry for (announced open). */
export interface BuiltContractDocument {
  document: ContractPayload
  /** Its size as JSON (about its size as CBOR, a little more). */
  bytes: number
  /** `<name>@<version>` of services announced with open schemas: their contract was not seen when the bundle was built. */
  unknown: string[]
}

/**
 * Builds the contract document of these services. Each service's part comes from the bundle's
 * table when it has one for that name and version with the same commands and events, else from
 * the schemas (the converter). A bundle has no converter: a contract its build did not see (one
 * made inside a function rather than at the top of a module) is announced with open schemas,
 * listed in `unknown`. Undefined when none of them has a command or an event: nothing to announce.
 */
export async function buildContractDocument(
  defs: readonly ServiceDefinition[],
  table: Readonly<Record<string, ContractService>> | undefined = BUNDLED_TABLE,
  load: SchemasLoader = loadSchemas,
): Promise<BuiltContractDocument | undefined> {
  const services = served(defs)
  if (services.length === 0) return undefined
  const unknown: string[] = []
  let converter: ((contract: AnyContract) => ContractService) | undefined | null = null
  const out: ContractService[] = []
  for (const { contract } of services) {
    const key = `${contract.name}@${contract.version}`
    const known = table?.[key]
    if (known !== undefined && sameNames(known.commands, contract.commands) && sameNames(known.events, contract.events)) {
      out.push(known)
      continue
    }
    if (converter === null) converter = (await load()).contractServiceOf
    if (converter !== undefined) {
      out.push(converter(contract))
      continue
    }
    unknown.push(key)
    out.push({
      name: contract.name,
      version: contract.version,
      commands: Object.fromEntries(Object.keys(contract.commands).map((name) => [name, { payload: {}, result: {} }])),
      events: Object.fromEntries(Object.keys(contract.events).map((name) => [name, {}])),
    })
  }
  const document: ContractPayload = { v: CONTRACT_VERSION, dialect: CONTRACT_DIALECT, services: out }
  return { document, bytes: Buffer.byteLength(JSON.stringify(document)), unknown }
}

/** Publishes a runtime's contract document: built once, sent after connecting (see `connected`). */
export interface ContractAnnouncer {
  /**
   * The link is connected. The document goes out the first time, then again only on a connection
   * without a session (`sessionPresent` false): that broker may have lost its retained messages.
   * Built and sent on a later turn, never on the way to `start` resolving.
   */
  connected(sessionPresent: boolean): void
}

/** Failed publishes after which a run stops announcing its document. */
const MAX_FAILURES = 3

/**
 * Creates the announcer of one runtime. A document that cannot be built or is larger than
 * MAX_CONTRACT_BYTES is not announced (logged once); after MAX_FAILURES failed publishes no
 * more are tried in this run: a broker that closes the connection on it (a gateway that does not
 * know the contract topic) must not get it again at every reconnect. The transport keeps no copy
 * to send again either (`callerResends`). Without a document a gateway leaves payloads to the device.
 */
export function createContractAnnouncer(core: RuntimeCore): ContractAnnouncer {
  let built: ReturnType<typeof buildContractDocument> | undefined
  let sent = false
  let busy = false
  let stopped = false
  let failures = 0
  let warnedUnknown = false

  const send = async (): Promise<void> => {
    built ??= buildContractDocument([...core.hosted.values()].map((h) => h.def))
    const made = await built
    // Nothing served: nothing to announce, now or later.
    if (made === undefined) return void (stopped = true)
    if (core.stopping) return
    if (made.bytes > MAX_CONTRACT_BYTES) {
      stopped = true
      core.log.warn({ bytes: made.bytes, limit: MAX_CONTRACT_BYTES }, 'contract document too large; not announced (a gateway leaves payload checks to this device)')
      return
    }
    if (made.unknown.length > 0 && !warnedUnknown) {
      warnedUnknown = true
      core.log.warn({ services: made.unknown }, 'contract not seen when this bundle was built: announced with open schemas (a gateway leaves payload checks for it to this device); define contracts at the top level of a module')
    }
    await core.link.publish(
      { v: ENVELOPE_VERSION, kind: 'contract', id: core.ids(), src: core.deviceId, inst: core.inst, at: core.now(), payload: made.document },
      { retain: true, callerResends: true },
    )
    sent = true
  }

  return {
    connected(sessionPresent) {
      if (stopped || busy || core.stopping || (sent && sessionPresent)) return
      busy = true
      setImmediate(() => {
        send()
          .catch((err: unknown) => {
            if (core.stopping || isOutpostError(err, ErrorCode.BRIDGE_CLOSED)) return
            // Built, but not sent: tried again at the next connection, a few times.
            if (++failures >= MAX_FAILURES || !isOutpostError(err, ErrorCode.BRIDGE_UNAVAILABLE)) stopped = true
            core.log.warn({ err: errorMessage(err), failures, retry: !stopped }, stopped ? 'contract document not announced; not tried again in this run' : 'contract document not announced; tried again at the next connection')
          })
          .finally(() => (busy = false))
      })
    },
  }
}
