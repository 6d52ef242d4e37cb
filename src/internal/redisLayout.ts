/**
 * How `RedisCache` lays values out in Redis, and the Lua that keeps versioned writes in order.
 *
 * Plain tiers store the value's JSON. Versioned tiers store `<version>:<json>`, and an invalidation leaves a
 * tombstone `-:` (for a while) instead of deleting the key. A write that stores nothing at a known version (a
 * zero or expired time-to-live) leaves a floor `-<version>:` instead: no value, but older versions are still
 * refused. A versioned write goes through `setIfNewer`: it is refused when Redis holds a tombstone, or a value or
 * a floor with a higher version, so a write-back of an older value (a slow load, a delayed write on another
 * instance) can never replace a newer one or revive a deleted one.
 *
 * @internal
 */
import type { ChainableCommander, Redis } from "ioredis"

/** The stored form of an invalidated key in a versioned tier. */
export const tombstone = "-:"

/** The stored form of "nothing, as of `version`" in a versioned tier. */
export const floor = (version: number): string => `-${version}:`

/**
 * `KEYS[1]`: the key. `ARGV[1]`: the new version; `ARGV[2]`: the stored form; `ARGV[3]`: milliseconds to live
 * (`0`: no expiry). Returns 1 when written, 0 when refused.
 */
const setIfNewerLua = `
local current = redis.call("GET", KEYS[1])
if current then
  local stored
  if string.sub(current, 1, 1) == "-" then
    if current == "-:" then return 0 end
    stored = tonumber(string.match(current, "^%-(%d+):$"))
  else
    stored = tonumber(string.match(current, "^(%d+):"))
  end
  if stored and stored > tonumber(ARGV[1]) then return 0 end
end
if ARGV[3] == "0" then
  redis.call("SET", KEYS[1], ARGV[2])
else
  redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
end
return 1
`

/** Deletes a key only if it still holds the value we read, so a fresh write racing the clean-up survives. */
export const deleteIfUnchangedLua =
  `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`

const commandName = "rmsCacheSetIfNewer"

/**
 * Defines the versioned write on `client` (once): ioredis then sends it with `EVALSHA` and loads the script
 * again by itself if Redis has forgotten it (after a restart).
 */
export const defineSetIfNewer = (client: Redis): void => {
  if (!(commandName in client)) client.defineCommand(commandName, { numberOfKeys: 1, lua: setIfNewerLua })
}

/** Queues a versioned write on a pipeline of a client prepared by `defineSetIfNewer`. */
export const setIfNewer = (
  pipeline: ChainableCommander,
  key: string,
  version: number,
  stored: string,
  millis: number
): void => {
  // Commands added by `defineCommand` are not in ioredis's types.
  ;(pipeline as unknown as Record<string, (...args: Array<string | number>) => unknown>)[commandName]!(
    key,
    version,
    stored,
    millis === Infinity ? 0 : Math.ceil(millis)
  )
}

/**
 * The JSON of a stored versioned value; `null` for a tombstone or a floor (nothing stored); `undefined` when it
 * is not of our layout.
 */
export const versionedJson = (stored: string): string | null | undefined => {
  if (stored.charCodeAt(0) === 45 /* - */) return /^-\d*:$/.test(stored) ? null : undefined
  const colon = stored.indexOf(":")
  if (colon <= 0) return undefined
  for (let i = 0; i < colon; i++) {
    const c = stored.charCodeAt(i)
    if (c < 48 || c > 57) return undefined
  }
  return stored.slice(colon + 1)
}
