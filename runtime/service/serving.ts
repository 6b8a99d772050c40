import type { Schema } from '../contract/contract.js'
import { ErrorCode, errorMessage, isOutpostError, toWireError, type WireError } from '../errors.js'
import type { Inbox, SentReply } from '../ports/inbox.js'
import { ENVELOPE_VERSION, type Envelope } from '../wire/envelope.js'
import { safeParse } from './compiled-schema.js'
import { MessageContext, type ContextDeps } from './handler-context.js'
import type { HostedService } from './hosted-service.js'
import { track, type LinkMessage, type RuntimeCore } from './runtime-core.js'
import { toValidationIssues } from './validation.js'
import { leaveUnacknowledged } from '../ports/bridge.js'

/** What running a command came to: a result or a wire error. */
export type Outcome = { value: unknown; error: undefined } | { value: undefined; error: WireError }

/** What serving commands needs besides the core. */
export interface ServingDeps {
  core: RuntimeCore
  /** What handlers' contexts reach. */
  contexts: ContextDeps
  /** Command ids taken on, and the replies sent (re-sent when a command arrives again). */
  inbox: Inbox
  /** Allowance for clocks between devices when checking a received deadline, ms. */
  clockSkewMs: number
}

/** Serving the commands of hosted services: validation, handler, result check, replies and the inbox. */
export interface Serving {
  /** Validates, runs the handler and checks its result; never throws, and stays synchronous for synchronous handlers. */
  execute(svc: HostedService | undefined, cmd: Envelope): Outcome | Promise<Outcome>
  /** Handler of the command subscriptions: runs a command once (the inbox drops repeats) and replies. */
  onCommand(msg: LinkMessage): void | Promise<void>
}

/** Creates the serving room of a runtime. */
export function createServing(deps: ServingDeps): Serving {
  const { core, contexts, inbox, clockSkewMs } = deps
  const { link, deviceId, inst, now, ids, counters, rejections, hostedBy } = core

  const fail = (error: WireError): Outcome => {
    counters.commandsFailed++
    return { value: undefined, error }
  }

  const execute = (svc: HostedService | undefined, cmd: Envelope): Outcome | Promise<Outcome> => {
    const name = cmd.name!
    const served = svc?.commands.get(name)
    if (svc === undefined || served === undefined) {
      return fail({ code: ErrorCode.NO_HANDLER, message: `device ${deviceId} has no command ${cmd.service}@${cmd.version}.${name}` })
    }
    const handler = served.handler
    const spec = served.spec as { payload: Schema; result: Schema }
    const parsed = safeParse(spec.payload, cmd.payload)
    if (!parsed.success) {
      const issues = toValidationIssues(parsed.issues)
      return fail({ code: ErrorCode.VALIDATION_FAILED, message: `payload of ${cmd.service}.${name} is invalid`, details: { issues } })
    }
    const ctx = new MessageContext(contexts, svc, cmd)
    let result: unknown
    let later: boolean
    try {
      result = (handler as (p: unknown, c: unknown) => unknown)(parsed.output, ctx)
      later = result instanceof Promise // inside: a Proxy's getPrototypeOf may throw
    } catch (err) {
      return handlerFailed(ctx, err)
    }
    if (later) {
      return (result as Promise<unknown>).then(
        (r) => finish(ctx, spec, cmd, r),
        (err: unknown) => handlerFailed(ctx, err),
      )
    }
    return finish(ctx, spec, cmd, result)
  }

  const finish = (ctx: MessageContext, spec: { result: Schema }, cmd: Envelope, result: unknown): Outcome => {
    ctx.dispose()
    if (ctx.timedOut || (cmd.deadline !== undefined && now() >= cmd.deadline)) {
      // Finished too late: whatever it computed, the caller has given up.
      return fail({ code: ErrorCode.TIMEOUT, message: `${cmd.service}.${cmd.name} finished after its deadline` })
    }
    let checked: ReturnType<typeof safeParse>
    try {
      checked = safeParse(spec.result, result)
    } catch {
      // A result that throws as it is read (a getter, a Proxy): the caller gets an internal error.
      ctx.log.error('handler returned a result that cannot be read')
      return fail({ code: ErrorCode.INTERNAL, message: 'internal error' })
    }
    if (!checked.success) {
      ctx.log.error({ issues: toValidationIssues(checked.issues) }, 'handler returned a result that fails its schema')
      return fail({ code: ErrorCode.INTERNAL, message: 'internal error' })
    }
    counters.commandsHandled++
    return { value: checked.output, error: undefined }
  }

  const handlerFailed = (ctx: MessageContext, err: unknown): Outcome => {
    ctx.dispose()
    const wire = toWireError(err)
    // Any caller can make a handler fail again and again: one line per command and code a minute.
    const svc = ctx.svcName
    const what = `${svc}.${ctx.command ?? ''}`
    if (wire.code === ErrorCode.INTERNAL) rejections.error(`handler-failed:${what}`, { err, service: svc, command: ctx.command, msgId: ctx.messageId }, 'command handler failed')
    else rejections.warn(`handler-refused:${what}:${wire.code}`, { code: wire.code, service: svc, command: ctx.command, msgId: ctx.messageId }, wire.message)
    return fail(wire)
  }

  const errorReply = (cmd: Envelope, error: WireError): Envelope => ({
    v: ENVELOPE_VERSION, kind: 'reply', id: ids(), src: deviceId, inst, at: now(), corr: cmd.id, replyTo: cmd.replyTo ?? cmd.src, error,
  })

  const replyFor = (cmd: Envelope, out: Outcome): Envelope =>
    out.error !== undefined
      ? errorReply(cmd, out.error)
      : {
          // A reply names only the command it answers (corr): service and name would be bytes for nothing.
          v: ENVELOPE_VERSION, kind: 'reply', id: ids(), src: deviceId, inst, at: now(), corr: cmd.id, replyTo: cmd.replyTo ?? cmd.src, payload: out.value,
        }

  /**
   * A reply encoded once, as it is sent and kept in the inbox. A result too large for a frame is
   * answered with a FRAME_TOO_LARGE error instead, so that the caller hears of it and does not
   * wait for its deadline. One that cannot be encoded or routed otherwise stays an envelope:
   * sending it fails and says why, now and at every repeat.
   */
  const prepared = (reply: Envelope): SentReply => {
    try {
      return link.prepareReply(reply)
    } catch (err) {
      if (reply.error === undefined && isOutpostError(err, ErrorCode.FRAME_TOO_LARGE)) {
        const { size, limit } = (err.details ?? {}) as { size?: number; limit?: number }
        const error = { code: ErrorCode.FRAME_TOO_LARGE, message: `the reply would be a frame of ${size ?? '?'} bytes, over the ${limit ?? '?'}-byte frame limit` }
        return prepared({ v: reply.v, kind: 'reply', id: reply.id, src: reply.src, inst: reply.inst, at: reply.at, corr: reply.corr, replyTo: reply.replyTo, error })
      }
      return { envelope: reply }
    }
  }

  /** Sends a reply as it was prepared (or kept): a stored frame goes out byte for byte. */
  const sendReply = (reply: SentReply, corr: string | undefined): void => {
    link.publishReply(reply).catch((err: unknown) => rejections.warn(`reply-not-sent:${(err as { code?: string } | null)?.code ?? 'INTERNAL'}`, { err: errorMessage(err), corr }, 'reply not sent; a redelivered command will re-send it'))
  }

  /** The inbox could not be read or written (storage busy or full): one line per code per minute. */
  const inboxTrouble = (err: unknown, cmd: Envelope): void => {
    const code = toWireError(err).code
    rejections.warn(`inbox:${code}`, { code, msgId: cmd.id, service: cmd.service, command: cmd.name }, `command inbox not available (${code}); commands are served without their redelivery record`)
  }

  const onCommand = (msg: LinkMessage): void | Promise<void> => {
    const cmd = msg.envelope
    if (cmd.kind !== 'command') return
    // Stopping: not taken, and not acknowledged either, so the broker sends it again to the next start.
    if (core.stopping) return leaveUnacknowledged()
    // A repeat is the same sender's message id again: `src` is the sender level of the topic the
    // command came on (the broker's access rules give each device its own), never `/`. Keyed by
    // the id alone, another client that guessed a caller's next ids (its events show how they
    // are made) sent commands under them first: the caller's own ran never, and their stored
    // replies went to that client.
    const key = `${cmd.src}/${cmd.id}`
    let seen: ReturnType<Inbox['get']>
    try {
      // A record of a version that knew the id alone (kept until the inbox's window passes it):
      // a repeat across an upgrade is still answered from it. An id holding a `/` could name
      // another sender's record that way, so it is looked up by its own key only.
      seen = inbox.get(key) ?? (cmd.id.includes('/') ? undefined : inbox.get(cmd.id))
    } catch (err) {
      // Storage cannot tell whether this command ran already: the caller is told, and may retry.
      inboxTrouble(err, cmd)
      sendReply(prepared(errorReply(cmd, toWireError(err))), cmd.id)
      return
    }
    if (seen !== undefined) {
      if (seen.state === 'done') {
        counters.duplicateCommands++
        sendReply(seen.reply, cmd.id) // executed once; the caller gets the same reply again, as it was sent
        return
      }
      if (seen.instance === inst) {
        counters.duplicateCommands++ // still running here; its reply will follow
        return
      }
      // Claimed by a process of this device that is gone (crash, power cut) before it answered.
      core.log.warn({ msgId: cmd.id, service: cmd.service, command: cmd.name }, 'running a command again that a previous start did not finish')
    }
    if (cmd.deadline !== undefined && cmd.deadline + clockSkewMs < now()) {
      counters.expiredCommands++
      rejections.warn('command-expired', { msgId: cmd.id, service: cmd.service, command: cmd.name }, 'dropped a command whose deadline has passed')
      return
    }
    try {
      inbox.claim(key, inst)
    } catch (err) {
      // A full disk or a long writer in another process: the command is served all the same
      // (it may need no writes of its own); only a redelivery of it could run it again.
      inboxTrouble(err, cmd)
    }
    const out = execute(hostedBy.get(cmd.service!)?.get(cmd.version ?? '1'), cmd)
    const done = (o: Outcome): void => {
      const reply = prepared(replyFor(cmd, o))
      try {
        inbox.complete(key, reply)
      } catch (err) {
        inboxTrouble(err, cmd)
      }
      sendReply(reply, cmd.id)
    }
    if (!(out instanceof Promise)) return done(out)
    track(core, out.then(done))
  }

  return { execute, onCommand }
}
