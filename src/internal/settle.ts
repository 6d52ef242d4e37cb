/**
 * Closing resources from promise-based libraries.
 *
 * @internal
 */
import * as Effect from "effect/Effect"

/**
 * Waits (at most a second) for a promise that closes something, whatever its outcome: closing is best effort,
 * and a close that rejects (a connection already down) must not turn a scope's release into a defect.
 */
export const settle = (close: () => Promise<unknown>): Effect.Effect<void> =>
  Effect.tryPromise(close).pipe(Effect.interruptible, Effect.timeout("1 second"), Effect.ignore)
