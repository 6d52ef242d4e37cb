/**
 * Batches of one-slot commands on a Redis Cluster, sent the way `RedisCache` needs them: each command on the
 * master that owns its slot, one pipeline per node per batch, every node at once, and never a command whose
 * keys span slots (so never a `CROSSSLOT`).
 *
 * ioredis's cluster pipeline goes to one node (the owner of its first key's slot, in ioredis's slot map) and is
 * refused outright when that map puts its keys in different groups; a node that redirects every command of it
 * alike (`MOVED`/`ASK` for one slot) has the whole pipeline sent again where it said, and any other mix of
 * redirections comes back as each command's error. So a batch is split here by the slot map (node and group,
 * which ioredis keeps together), and a command that a node redirected — `MOVED`, `ASK`, `TRYAGAIN`,
 * `CLUSTERDOWN`: refused, not run — is sent again on its own, which ioredis redirects like any single command.
 * A node never answers for a slot it does not serve, so a stale slot map costs a round trip, never a wrong
 * value. (`RedisClient` reads from masters only; a client of the user's that reads from replicas gets what its
 * replicas hold, here as everywhere else.)
 *
 * @internal
 */
import calculateSlot from "cluster-key-slot"
import type { ChainableCommander, Cluster } from "ioredis"

/** The slot of a key, as Redis computes it (hash tags honoured). */
export const slotOf: (key: string) => number = calculateSlot

/** One command whose keys all live in `slot`. */
export interface SlotCommand {
  readonly slot: number
  /** Queues the command on a pipeline. */
  readonly queue: (pipeline: ChainableCommander) => void
}

/** A command's outcome: its error, or `null` and its reply. */
export type Reply = readonly [error: Error | null, value: unknown]

const redirection = /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN)\b/

/** Whether a node refused the command because another node serves its slot now, or the slot is in transit. */
export const isRedirection = (error: Error): boolean => redirection.test(error.message)

/** Whether Redis refused the command because the key holds another type. */
const isWrongType = (error: Error): boolean => error.message.startsWith("WRONGTYPE")

const noReply = (): Reply => [new Error("no reply"), null]

/** Sends the commands at `indexes` in one pipeline; a pipeline refused as a whole is each command's error. */
const pipelined = (cluster: Cluster, commands: ReadonlyArray<SlotCommand>, indexes: ReadonlyArray<number>) => {
  const pipeline = cluster.pipeline()
  for (let i = 0; i < indexes.length; i++) commands[indexes[i]!]!.queue(pipeline)
  return pipeline.exec().then(
    (results): ReadonlyArray<Reply> => results ?? indexes.map(() => [new Error("pipeline discarded"), null]),
    (error: Error): ReadonlyArray<Reply> => indexes.map(() => [error, null])
  )
}

/**
 * Sends `commands`: one pipeline per node of the slot map, all at once; a command whose slot has no known owner
 * (the map is not loaded yet, or lost a range), or that its node redirected, on its own (a pipeline of one,
 * which ioredis follows across `MOVED` and `ASK`). Resolves with each command's outcome, in order; never rejects.
 */
export const sendBySlot = (cluster: Cluster, commands: ReadonlyArray<SlotCommand>): Promise<Array<Reply>> => {
  const replies = new Array<Reply>(commands.length)
  const batches = new Map<string, Array<number>>()
  const pending: Array<Promise<void>> = []
  const alone = (i: number) =>
    pending.push(pipelined(cluster, commands, [i]).then((reply) => void (replies[i] = reply[0] ?? noReply())))
  for (let i = 0; i < commands.length; i++) {
    const slot = commands[i]!.slot
    const owners = cluster.slots[slot]
    if (owners === undefined || owners.length === 0) {
      alone(i)
      continue
    }
    // The node, and ioredis's group of the slot: a pipeline whose slots ioredis would group apart is refused.
    const batch = `${owners[0]}#${cluster._groupsBySlot[slot]}`
    const indexes = batches.get(batch)
    if (indexes === undefined) batches.set(batch, [i])
    else indexes.push(i)
  }
  for (const indexes of batches.values()) {
    pending.push(pipelined(cluster, commands, indexes).then((results) => {
      const redirected: Array<number> = []
      for (let j = 0; j < indexes.length; j++) {
        const reply = results[j] ?? noReply()
        if (reply[0] !== null && isRedirection(reply[0])) redirected.push(indexes[j]!)
        else replies[indexes[j]!] = reply
      }
      if (redirected.length === 0) return
      return sendAlone(cluster, commands, redirected).then((answers) => {
        for (let j = 0; j < redirected.length; j++) replies[redirected[j]!] = answers[j]!
      })
    }))
  }
  return Promise.all(pending).then(() => replies)
}

/** Sends each of the commands at `indexes` on its own, all at once. */
const sendAlone = (cluster: Cluster, commands: ReadonlyArray<SlotCommand>, indexes: ReadonlyArray<number>) =>
  Promise.all(indexes.map((i) => pipelined(cluster, commands, [i]).then((reply) => reply[0] ?? noReply())))

/** What `readBySlot` read: each key's bytes (`null` when absent or of another type), and the extra key's text. */
export interface ReadResult {
  readonly stored: Array<Buffer | null>
  readonly extra: string | null
}

/**
 * Reads `keys` as bytes, and `extra` as text, in one round trip of latency: a `GET` per key (an `MGET` for the
 * keys of one slot) and a `GET` of `extra`, in one pipeline per node. A key that holds another type reads as
 * `null`, as `MGET` answers it. Rejects with the first other error.
 */
export const readBySlot = (
  cluster: Cluster,
  keys: ReadonlyArray<string>,
  extra: string,
  extraSlot: number
): Promise<ReadResult> => {
  const bySlot = new Map<number, Array<number>>()
  for (let i = 0; i < keys.length; i++) {
    const slot = calculateSlot(keys[i]!)
    const indexes = bySlot.get(slot)
    if (indexes === undefined) bySlot.set(slot, [i])
    else indexes.push(i)
  }
  const groups: Array<Array<number>> = []
  const commands: Array<SlotCommand> = []
  for (const [slot, indexes] of bySlot) {
    groups.push(indexes)
    if (indexes.length === 1) {
      const key = keys[indexes[0]!]!
      commands.push({ slot, queue: (pipeline) => void pipeline.getBuffer(key) })
    } else {
      const slotKeys = indexes.map((i) => keys[i]!)
      commands.push({ slot, queue: (pipeline) => void pipeline.mgetBuffer(slotKeys) })
    }
  }
  commands.push({ slot: extraSlot, queue: (pipeline) => void pipeline.get(extra) })
  return sendBySlot(cluster, commands).then((replies) => {
    const stored = new Array<Buffer | null>(keys.length).fill(null)
    for (let g = 0; g < groups.length; g++) {
      const [error, value] = replies[g]!
      const indexes = groups[g]!
      if (error !== null) {
        if (isWrongType(error)) continue
        throw error
      }
      if (indexes.length === 1) stored[indexes[0]!] = value as Buffer | null
      else for (let j = 0; j < indexes.length; j++) stored[indexes[j]!] = (value as Array<Buffer | null>)[j] ?? null
    }
    const [error, value] = replies[groups.length]!
    if (error !== null) throw error
    return { stored, extra: value as string | null }
  })
}

/** Nodes each cluster client has lost so far: one listener per client, however many tiers and buses use it. */
const nodeLosses = new WeakMap<Cluster, { count: number }>()

/** The count of nodes `cluster` has lost (a master that died, a failover), kept up to date. */
export const nodeLossesOf = (cluster: Cluster): { readonly count: number } => {
  let losses = nodeLosses.get(cluster)
  if (losses === undefined) {
    const counter = { count: 0 }
    losses = counter
    nodeLosses.set(cluster, counter)
    cluster.on("-node", () => void counter.count++)
  }
  return losses
}
