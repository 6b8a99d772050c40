import * as v from 'valibot'
import { ErrorCode, OutpostError, type ValidationIssue } from '../errors.js'
import type { Schema } from '../contract/contract.js'
import { safeParse } from './compiled-schema.js'

function kindOf(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'array'
  if (value instanceof Uint8Array) return 'bytes'
  return typeof value
}

/** Turns valibot issues into wire issues: paths and kinds, never the offending value. */
export function toValidationIssues(issues: readonly v.BaseIssue<unknown>[]): ValidationIssue[] {
  return issues.slice(0, 20).map((issue) => {
    let path = ''
    for (const item of issue.path ?? []) {
      const key = (item as { key?: unknown }).key
      path += typeof key === 'number' ? `[${key}]` : path === '' ? String(key) : `.${String(key)}`
    }
    const received = kindOf(issue.input)
    const where = path === '' ? 'value' : path
    return {
      path: where === 'value' ? '' : path,
      expected: issue.expected,
      received,
      message: `${where}: expected ${issue.expected ?? issue.type}, received ${received}`,
    }
  })
}

/** Validates `value` against a schema and returns the parsed output. @throws VALIDATION_FAILED */
export function validate<S extends Schema>(schema: S, value: unknown, what: string): v.InferOutput<S> {
  const r = safeParse(schema, value)
  if (r.success) return r.output
  const issues = toValidationIssues(r.issues)
  throw new OutpostError(ErrorCode.VALIDATION_FAILED, `${what} is invalid: ${issues.map((i) => i.message).join('; ')}`, { details: { issues } })
}
