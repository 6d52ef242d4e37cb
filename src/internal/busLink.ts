/**
 * A core's link to the other instances, shared by `CachedStore` and `LoadingCache`: its changes announced on the
 * bus once the tiers here are in step, and theirs applied to the nearest tier. Without a bus every step is a
 * no-op: the cache serves one instance.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { InvalidationBus, TagLedgerError } from "../InvalidationBus.js"
import type { MultiLevel } from "./multiLevel.js"
import { writeSpan } from "./spans.js"
import type { TagClock } from "./tags.js"

/** What a cached store or a loading cache does through the bus. */
export interface BusLink<K> {
  /**
   * Tells the other instances that `key` changed, once the tiers here are in step — and whether the shared
   * tiers missed the change, so that they do not read the older value there before it is repaired.
   */
  announce(key: K): Effect.Effect<void>
  /** Drops `key` from every tier here, then tells the others. */
  invalidate(key: K): Effect.Effect<void>
  /** Drops every key from every tier here, then tells the others. */
  readonly invalidateAll: Effect.Effect<void>
  /** Orders an invalidation of `tag` in the ledger, which tells the others; a no-op for untagged entries. */
  invalidateTag(tag: string): Effect.Effect<void, TagLedgerError>
}

/**
 * Links `core` to `bus`, listening to the other instances until the scope closes. With `tags`, their tag
 * invalidations are learnt, and a gap forgets what was known of the ledger, as it drops the nearest tier.
 */
export const link = <K>(
  core: Pick<MultiLevel<K, unknown, unknown>, "name" | "drop" | "dropNearest" | "fartherStale"> & { readonly tags: TagClock | undefined },
  bus: InvalidationBus<K> | undefined
): Effect.Effect<BusLink<K>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const announce = (key: K): Effect.Effect<void> =>
      bus === undefined ? Effect.void : Effect.suspend(() => bus.publish([key], { sharedTiersStale: core.fartherStale(key) }))
    const tags = core.tags
    if (bus !== undefined) {
      const dropAll = core.dropNearest("all", false)
      yield* bus.listen({
        onInvalidate: (keys, { sharedTiersStale }) => core.dropNearest(keys, sharedTiersStale),
        onGap: tags === undefined ? dropAll : Effect.zipRight(Effect.sync(() => tags.gap()), dropAll),
        ...(tags === undefined ? {} : { onTags: (heard) => Effect.sync(() => tags.learn(heard)) })
      })
    }
    return {
      announce,
      invalidate: (key) => writeSpan(Effect.zipRight(core.drop([key]), announce(key)), core.name, "invalidate", [key]),
      invalidateAll: writeSpan(
        Effect.zipRight(core.drop("all"), bus === undefined ? Effect.void : bus.publishAll),
        core.name,
        "invalidateAll",
        "all"
      ),
      invalidateTag: (tag) =>
        tags === undefined
          ? Effect.void
          : writeSpan(Effect.asVoid(tags.invalidate([tag])), core.name, "invalidateTag", [])
    }
  })
