/**
 * What may be told of a Redis failure.
 *
 * ioredis attaches the failed command to its errors (`command: { name, args }`), and when a connection is
 * re-authenticated the command is `AUTH` and its argument is the password; a refused handshake also rejects
 * every queued command with that same error. Printing or serialising such an error (`util.inspect`,
 * `JSON.stringify`, any Effect logger) prints the password, and the arguments of other commands carry the
 * cached values. So nothing of ioredis's errors is kept but their kind, message and code.
 *
 * @internal
 */
import * as Predicate from "effect/Predicate"

/** The longest message kept: an error message is a diagnosis, not a payload. */
const maxMessageLength = 500

/**
 * A Redis failure with its arguments dropped. Not an `Error`: building it captures no stack trace, and
 * printing it shows exactly these fields.
 */
export class RedisFailure {
  constructor(
    /** The error's class, such as `ReplyError` or `Error`. */
    readonly name: string,
    /** The error's message (bounded). */
    readonly message: string,
    /** A code, when the error has one: `ECONNREFUSED`, `WRONGPASS`, `NOAUTH`… */
    readonly code: string | undefined,
    /** The name of the command that failed (never its arguments). */
    readonly command: string | undefined
  ) {}

  toString(): string {
    return `${this.name}: ${this.message}`
  }

  toJSON(): unknown {
    return { name: this.name, message: this.message, code: this.code, command: this.command }
  }
}

const text = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined)

/** The first word of a Redis error reply (`WRONGPASS invalid username-password pair`) is its code. */
const replyCode = (message: string): string | undefined => {
  const match = /^([A-Z][A-Z0-9_]+) /.exec(message)
  return match === null ? undefined : match[1]
}

/** Keeps what can be told of `error`: its kind, message and code, never what the command carried. */
export const redisFailure = (error: unknown): RedisFailure => {
  if (error instanceof RedisFailure) return error
  const message = Predicate.hasProperty(error, "message") ? String(error.message) : String(error)
  const bounded = message.length > maxMessageLength ? `${message.slice(0, maxMessageLength)}…` : message
  const name = Predicate.hasProperty(error, "name") ? String(error.name) : "Error"
  const code = Predicate.hasProperty(error, "code") ? text(error.code) : replyCode(message)
  const command = Predicate.hasProperty(error, "command") && Predicate.hasProperty(error.command, "name")
    ? text(error.command.name)
    : undefined
  return new RedisFailure(name, bounded, code ?? replyCode(message), command)
}
