/**
 * Scheduler turns, for tests under `TestClock`: letting woken fibers run, and waiting (without time passing)
 * for something another fiber does — bounded, so that a test fails with a reason instead of hanging.
 */
import { expect } from "@effect/vitest"
import * as Effect from "effect/Effect"

/** Lets every fiber woken so far run to its next wait. */
export const settle = Effect.forEach(Array.from({ length: 20 }), () => Effect.yieldNow(), { discard: true })

/** Scheduler turns until `condition` holds (no time passes); fails the test if it never does. */
export const until = (condition: () => boolean, what = "condition") =>
  Effect.gen(function*() {
    for (let i = 0; i < 500 && !condition(); i++) yield* Effect.yieldNow()
    expect(condition(), what).toBe(true)
  })
