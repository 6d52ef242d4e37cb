/**
 * The tag ledger in Redis: one hash per namespace, `escape(namespace)#tags`, whose field `#seq` is the ledger's
 * position and `t:<tag>` the position of each tag's last invalidation. One key is one slot: on a cluster it
 * lives on one master, read with one `HMGET` and written with one script, never a cross-slot command.
 *
 * A failover, or a restart of a Redis that keeps nothing, may roll the hash back (replication is asynchronous):
 * an instance's first invalidation, and its first after its cluster client lost a node, first moves the
 * position by a random jump of a million or more, as `RedisCache` moves its namespace generation, so that
 * positions do not come back below ones already handed out and stamped on entries that outlived the loss.
 *
 * The hash keeps one field per tag ever invalidated (no expiry: Redis 7.0 has no per-field one).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import { identity } from "effect/Function"
import type { Cluster, Redis } from "ioredis"
import { TagLedgerError, type TagPositions } from "../InvalidationBus.js"
import { escapeKeyPart } from "../RedisCache.js"
import { bounded, deadlineLeaf, type Watchdog } from "./deadline.js"
import { nodeLossesOf } from "./redisCluster.js"
import { redisFailure } from "./redisFailure.js"
import type { Ledger } from "./tags.js"

/** The key of `namespace`'s tag ledger. */
export const tagLedgerKey = (namespace: string): string => `${escapeKeyPart(namespace)}#tags`

/**
 * KEYS[1] the ledger; ARGV[1] the floor, ARGV[2] a jump (0: none), ARGV[3…] the tags. The new position is
 * above the ledger's and the floor; every tag gets it. Returns it.
 */
const invalidateScript = `
local jump = tonumber(ARGV[2])
if jump > 0 then redis.call('HINCRBY', KEYS[1], '#seq', jump) end
local at = redis.call('HINCRBY', KEYS[1], '#seq', 1)
local floor = tonumber(ARGV[1])
if at <= floor then
  at = floor + 1
  redis.call('HSET', KEYS[1], '#seq', string.format('%d', at))
end
for i = 3, #ARGV do redis.call('HSET', KEYS[1], 't:' .. ARGV[i], string.format('%d', at)) end
return at`

/** A position as stored: an absent field is 0; anything but digits is not ours. */
const positionOf = (reply: unknown): number | undefined =>
  reply === null ? 0 : typeof reply === "string" && /^\d{1,15}$/.test(reply) ? Number(reply) : undefined

/** The ledger of `namespace` over `client`, each call bounded by `watchdog`. */
export const redisLedger = (client: Redis | Cluster, namespace: string, watchdog: Watchdog, cluster: boolean): Ledger => {
  const key = tagLedgerKey(namespace)
  const losses = cluster ? nodeLossesOf(client as Cluster) : undefined
  // Starts unlike any count: this instance's first invalidation jumps too. It may have started after a failover
  // that rolled the ledger back, below positions other instances stamped entries with.
  let lossesSeen = -1
  const failure = (cause: unknown) => new TagLedgerError({ reason: redisFailure(cause).message })
  const call = <A>(run: () => PromiseLike<A>): Effect.Effect<A, TagLedgerError> =>
    Effect.mapError(bounded(deadlineLeaf(run, identity), watchdog, false), failure)
  return {
    invalidateTags: (tags, floor) =>
      Effect.suspend(() => {
        const seen = losses?.count ?? 0
        // Far above what a failover can lose (the invalidations of a replication lag), far below 2^53 over
        // billions of jumps.
        const jump = seen === lossesSeen ? 0 : 1_000_000 + Math.floor(Math.random() * 1_000_000)
        return Effect.flatMap(
          call(() => (client as Redis).eval(invalidateScript, 1, key, floor, jump, ...tags)),
          (at) => {
            if (typeof at !== "number") return Effect.fail(new TagLedgerError({ reason: `${key} answered ${String(at)}` }))
            lossesSeen = seen
            return Effect.succeed(at)
          }
        )
      }),
    tagPositions: (tags) =>
      Effect.flatMap(call(() => client.hmget(key, "#seq", ...tags.map((tag) => `t:${tag}`))), (replies) => {
        const positions = replies.map(positionOf)
        if (positions.some((at) => at === undefined)) {
          return Effect.fail(new TagLedgerError({ reason: `the key ${key} holds something other than a tag ledger` }))
        }
        const read: TagPositions = {
          position: positions[0]!,
          tags: new Map(tags.map((tag, i) => [tag, positions[i + 1]!]))
        }
        return Effect.succeed(read)
      })
  }
}
