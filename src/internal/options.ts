/**
 * Validation of the options shared by the in-memory tiers, and time-to-live arithmetic.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { maxCapacity } from "./lruMap.js"

/** Fails unless `capacity` is an integer from 1 to `maxCapacity` (2^30). */
export const validateCapacity = (capacity: number, cache: string): Effect.Effect<number, Cause.IllegalArgumentException> =>
  Number.isSafeInteger(capacity) && capacity >= 1 && capacity <= maxCapacity
    ? Effect.succeed(capacity)
    : Effect.fail(
      new Cause.IllegalArgumentException(
        `cache "${cache}": capacity must be an integer from 1 to ${maxCapacity}, got ${String(capacity)}`
      )
    )

/**
 * A default time-to-live in milliseconds (`Infinity` when absent or infinite). Fails for input that is not a
 * duration or is not positive, since a default that expires everything at once is always a mistake.
 */
export const validateTimeToLive = (
  input: Duration.DurationInput | undefined,
  cache: string,
  option = "timeToLive"
): Effect.Effect<number, Cause.IllegalArgumentException> => {
  if (input === undefined) return Effect.succeed(Infinity)
  const millis = Option.map(Duration.decodeUnknown(input), Duration.toMillis)
  return Option.isSome(millis) && millis.value > 0
    ? Effect.succeed(millis.value)
    : Effect.fail(
      new Cause.IllegalArgumentException(
        `cache "${cache}": ${option} must be a positive duration, got ${JSON.stringify(String(input))}`
      )
    )
}

/**
 * The time-to-live of one write in milliseconds: the entry's own, or else the tier's default. Zero or less
 * means the entry is dead on arrival.
 */
export const entryTimeToLive = (input: Duration.DurationInput | undefined, fallback: number): number =>
  input === undefined ? fallback : Duration.toMillis(input)
