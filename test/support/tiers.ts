/**
 * Tiers for tests of the multi-level cache's fail-open behaviour.
 */
import * as Effect from "effect/Effect"
import type * as Cache from "../../src/Cache.js"

/** A tier that never answers: a backend that hangs. */
export const hangingTier: Cache.Cache<string, string> = {
  name: "hanging",
  get: () => Effect.never,
  getOption: () => Effect.never,
  getMany: () => Effect.never,
  set: () => Effect.never,
  setMany: () => Effect.never,
  invalidate: () => Effect.never,
  invalidateAll: Effect.never,
  size: Effect.never
}
