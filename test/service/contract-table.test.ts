// The contract document from a bundle's table (build/contract-table.ts puts it there): a table
// entry stands for its contract only when name, version, command and event names all match; a
// contract the table lacks is converted from its schemas, or, in a bundle (no converter), announced
// with open schemas and named in `unknown`. And the table itself: one entry per contract, in key
// order, none for a name and version two different contracts share.
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { CONTRACTS_DEFINED } from '../../runtime/contract/contract.js'
import { defineContract, defineService } from '../../runtime/index.js'
import { buildContractDocument, type SchemasLoader } from '../../runtime/service/contract-document.js'
import { contractServiceOf, contractTable } from '../../runtime/service/contract-schemas.js'

const lamp = defineContract({
  name: 'lamp',
  version: '2',
  commands: { set: { payload: v.object({ on: v.boolean() }), result: v.object({ on: v.boolean() }) } },
  events: { switched: v.object({ on: v.boolean() }) },
})
const lampService = defineService(lamp, { commands: { set: ({ on }) => ({ on }) } })

const converter: SchemasLoader = () => import('../../runtime/service/contract-schemas.js')
const noConverter: SchemasLoader = async () => ({}) // what a bundle has (build/stubs/contract-schemas-left-out.ts)
const mustNotLoad: SchemasLoader = () => {
  throw new Error('the converter was loaded')
}

describe('a contract document built from a bundle table', () => {
  it('takes a matching table entry as it is, without loading the converter', async () => {
    const entry = { ...contractServiceOf(lamp), commands: { set: { payload: { title: 'from the table' }, result: {} } } }
    const made = await buildContractDocument([lampService], { 'lamp@2': entry }, mustNotLoad)
    expect(made?.document.services).toEqual([entry])
    expect(made?.unknown).toEqual([])
  })

  it('converts a contract whose entry names other commands or events (another contract under the same name and version)', async () => {
    const stale = { ...contractServiceOf(lamp), events: {} }
    const made = await buildContractDocument([lampService], { 'lamp@2': stale }, converter)
    expect(made?.document.services).toEqual([contractServiceOf(lamp)])
    expect((made?.document.services[0]?.events.switched as { type?: string }).type).toBe('object')
  })

  it('in a bundle, announces a contract its build did not see with open schemas and names it', async () => {
    const made = await buildContractDocument([lampService], {}, noConverter)
    expect(made?.unknown).toEqual(['lamp@2'])
    expect(made?.document.services).toEqual([{ name: 'lamp', version: '2', commands: { set: { payload: {}, result: {} } }, events: { switched: {} } }])
  })
})

describe('the table a bundle carries', () => {
  it('has each contract once, by name@version, in key order; two different contracts under one key are left out', () => {
    const other = defineContract({ name: 'lamp', version: '2', commands: { toggle: { payload: v.object({}), result: v.object({}) } } })
    const alpha = defineContract({ name: 'alpha', version: '1', events: { ping: v.object({ n: v.number() }) } })
    expect(Object.keys(contractTable([lamp, alpha, lamp]))).toEqual(['alpha@1', 'lamp@2'])
    expect(contractTable([lamp, alpha, lamp])['lamp@2']).toEqual(contractServiceOf(lamp))
    expect(Object.keys(contractTable([lamp, other, alpha]))).toEqual(['alpha@1'])
  })

  it('is filled as contracts are defined while the build collects them, and only then', () => {
    const g = globalThis as Record<symbol, unknown>
    g[CONTRACTS_DEFINED] = []
    try {
      const seen = defineContract({ name: 'seen', version: '1' })
      expect(g[CONTRACTS_DEFINED]).toEqual([seen])
    } finally {
      delete g[CONTRACTS_DEFINED]
    }
    defineContract({ name: 'unseen', version: '1' })
    expect(g[CONTRACTS_DEFINED]).toBeUndefined()
  })
})
