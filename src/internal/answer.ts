/**
 * An effect that is one primitive answering a read: `answer(key)` is computed when the fiber runs it, never
 * earlier. Run by the fiber, it commits to that answer; within `Effect.gen`, `yield*` computes it at that point
 * and hands it to the generator's driver directly, so that a hit (an `Effect.succeed`, which is an `Exit`) is
 * applied in place like `yield* Effect.succeed(value)`, without the two trips through the fiber's run loop that
 * `Effect.suspend` around the answer costs (measured in `bench/effect.ts` and `bench/repository.ts`).
 *
 * @internal
 */
import type * as Effect from "effect/Effect"
import * as Effectable from "effect/Effectable"
import { SingleShotGen, YieldWrap } from "effect/Utils"

export class Answer<K, A, E> extends Effectable.Class<A, E> {
  constructor(
    private readonly answer: (key: K) => Effect.Effect<A, E>,
    private readonly key: K
  ) {
    super()
  }

  commit(): Effect.Effect<A, E> {
    return this.answer(this.key)
  }

  // The generator calls this when it reaches `yield*`, that is when the fiber runs this effect, never earlier.
  override [Symbol.iterator](): Effect.EffectGenerator<Effect.Effect<A, E>> {
    return new SingleShotGen(new YieldWrap(this.answer(this.key)))
  }
}
