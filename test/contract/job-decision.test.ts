import { describe, expect, it } from 'vitest'
import { ErrorCode, errorMessage, isOutpostError, OutpostError, toWireError } from '../../runtime/errors.js'
import { isJobDecision, JobDecision } from '../../runtime/contract/queue.js'

// ctx.retry / ctx.fail make a JobDecision; it crosses the worker → runner boundary as an
// OutpostError with code JOB_RETRY or JOB_FAILED.
describe('JobDecision', () => {
  it('is an OutpostError with the code of its decision and the reason (and delay) in details', () => {
    const retry = new JobDecision('retry', 'camera busy', 30_000)
    expect(isOutpostError(retry, ErrorCode.JOB_RETRY)).toBe(true)
    expect(retry).toBeInstanceOf(OutpostError)
    expect(retry).toMatchObject({ decision: 'retry', reason: 'camera busy', delayMs: 30_000, message: 'camera busy', details: { reason: 'camera busy', delayMs: 30_000 } })
    expect(toWireError(retry)).toEqual({ code: 'JOB_RETRY', message: 'camera busy', details: { reason: 'camera busy', delayMs: 30_000 } })
    const fail = new JobDecision('fail', 'photo is corrupt')
    expect(isOutpostError(fail, ErrorCode.JOB_FAILED)).toBe(true)
    expect(fail.delayMs).toBeUndefined()
    expect(toWireError(fail)).toEqual({ code: 'JOB_FAILED', message: 'photo is corrupt', details: { reason: 'photo is corrupt' } })
    expect(errorMessage(fail)).toBe('photo is corrupt')
  })

  it('is recognised without its class (minification-safe), and only as a decision', () => {
    expect(isJobDecision(new JobDecision('retry', 'later'))).toBe(true)
    expect(isJobDecision(new JobDecision('fail', 'never'))).toBe(true)
    // What a bundler that renamed the class leaves: the fields, not the class.
    expect(isJobDecision({ name: 'OutpostError', code: 'JOB_FAILED', decision: 'fail', reason: 'x', message: 'x' })).toBe(true)
    // Other errors with those codes, or decisions that contradict their code, are not decisions.
    expect(isJobDecision(new OutpostError(ErrorCode.JOB_FAILED, 'thrown by hand'))).toBe(false)
    expect(isJobDecision({ name: 'OutpostError', code: 'JOB_RETRY', decision: 'fail' })).toBe(false)
    expect(isJobDecision({ name: 'JobDecision', decision: 'retry', reason: 'old shape' })).toBe(false)
    for (const x of [null, undefined, 'retry', 1, new Error('retry'), {}]) expect(isJobDecision(x)).toBe(false)
  })
})

describe('errorMessage', () => {
  it('says something for any thrown value and never throws itself, even for a value every look at which throws', () => {
    const trap = (): never => {
      throw new Error('trap')
    }
    const hostile = new Proxy({}, { get: trap, getPrototypeOf: trap, has: trap, ownKeys: trap, getOwnPropertyDescriptor: trap })
    expect(errorMessage(hostile)).toBe('thrown object')
    expect(errorMessage(Object.defineProperty(new Error('x'), 'message', { get: trap }))).toBe('thrown object')
    expect(errorMessage(new Error('plain'))).toBe('plain')
    expect(errorMessage({ message: 'shaped' })).toBe('shaped')
    expect(errorMessage(null)).toBe('thrown null')
    expect(errorMessage(undefined)).toBe('thrown undefined')
    expect(errorMessage('text')).toBe('text')
    expect(errorMessage(42)).toBe('thrown number: 42')
    expect(errorMessage(Symbol('s'))).toBe('thrown symbol: Symbol(s)')
    expect(errorMessage({ toString: trap })).toBe('thrown object')
  })
})
