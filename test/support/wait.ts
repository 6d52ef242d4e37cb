/**
 * Waiting on the real clock for something another fiber or process does: bounded, so that a test fails with
 * a reason instead of hanging.
 */
import * as Effect from "effect/Effect"

/** Polls `condition` every few milliseconds until it holds; dies after `millis`. */
export const waitFor = (condition: () => boolean | Effect.Effect<boolean, unknown>, millis = 5_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + millis
    for (;;) {
      const result = condition()
      if (typeof result === "boolean" ? result : yield* result) return
      if (Date.now() > deadline) return yield* Effect.dieMessage(`not reached within ${millis} ms`)
      yield* Effect.sleep("5 millis")
    }
  })
