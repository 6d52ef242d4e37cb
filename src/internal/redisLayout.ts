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
 * A stored value is read back with the tier's schema through `valueDecoder`: the schema compiled once into plain
 * functions, with Schema's own parser as the authority for everything the compiler does not reproduce.
 *
 * @internal
 */
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import type * as Schema from "effect/Schema"
import * as AST from "effect/SchemaAST"
import type { ChainableCommander, Cluster, Redis } from "ioredis"

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
export const defineSetIfNewer = (client: Redis | Cluster): void => {
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

// ---------------------------------------------------------------------------------------------------------------
// Decoding stored values
// ---------------------------------------------------------------------------------------------------------------

/** What a value decoder returns for data that does not decode with the tier's schema. */
export const invalid: unique symbol = Symbol.for("@rms/cache/RedisCache/invalid")

/** What a compiled step returns when it cannot decide synchronously: the whole input goes to Schema instead. */
const undecided: unique symbol = Symbol.for("@rms/cache/RedisCache/undecided")

/** One compiled node: the decoded value, `invalid`, or `undecided`. */
type Step = (input: unknown) => unknown

/** The options Schema's own parser hands to filters, transformations and declarations when given none. */
const parseOptions = AST.defaultParseOption

const hasOwn = Object.prototype.hasOwnProperty

/**
 * A decoder of JSON data with `schema`: the decoded value, or `invalid` when Schema's decoding fails. Same
 * answers as `ParseResult.decodeUnknownEither(schema)`, which stays the authority: the common nodes (structs of
 * primitives, literals, refinements, brands, synchronous transformations and declarations such as
 * `DateTimeUtc` and `Schema.Class`) are compiled once into plain functions that call the schema's own filters,
 * transformations and declarations, without the `Either`s, issues and option merging of the general parser
 * (which take about half the time of decoding a `Task` with Schema, on every L2 hit). A schema with any other node (unions of
 * structs, tuples, records, suspended or effectful schemas, parse options or fallbacks in annotations) is
 * decoded by Schema as is; so is any input a compiled step cannot decide, or finds invalid (a corrupt value is
 * rare, and Schema's answer then settles it).
 */
export const valueDecoder = <A, I, R>(schema: Schema.Schema<A, I, R>): (data: unknown) => A | typeof invalid => {
  const parse = ParseResult.decodeUnknownEither(schema as Schema.Schema<A, I>)
  const bySchema = (data: unknown): A | typeof invalid => {
    const decoded = parse(data)
    return Either.isRight(decoded) ? decoded.right : invalid
  }
  const compiled = compile(schema.ast)
  if (compiled === undefined) return bySchema
  return (data) => {
    const value = compiled(data)
    return value === invalid || value === undecided ? bySchema(data) : value as A
  }
}

/**
 * The compiled form of `ast`, or `undefined` when a node is not one this compiler reproduces exactly (then the
 * whole schema is left to Schema). Exported for the differential tests.
 */
export const compile = (ast: AST.AST): Step | undefined => {
  if (hasParseAnnotations(ast)) return undefined
  switch (ast._tag) {
    case "StringKeyword":
      return (input) => typeof input === "string" ? input : invalid
    case "NumberKeyword":
      return (input) => typeof input === "number" ? input : invalid
    case "BooleanKeyword":
      return (input) => typeof input === "boolean" ? input : invalid
    case "UndefinedKeyword":
      return (input) => input === undefined ? input : invalid
    case "UnknownKeyword":
    case "AnyKeyword":
      return (input) => input
    case "Literal": {
      const literal = ast.literal
      return (input) => input === literal ? input : invalid
    }
    case "Union": {
      // Only unions whose members all decode to their input: then the order Schema tries them in cannot change
      // the result, which is the input whenever one member accepts it.
      if (!ast.types.every(isIdentity)) return undefined
      const members = ast.types.map(compile)
      if (members.some((member) => member === undefined)) return undefined
      const steps = members as Array<Step>
      return (input) => {
        for (let i = 0; i < steps.length; i++) {
          if (steps[i]!(input) !== invalid) return input
        }
        return invalid
      }
    }
    case "Refinement": {
      // A chain of refinements (`minLength`, `pattern`, `brand`…) is one step: the base, then each filter from
      // the innermost out, as Schema applies them.
      const chain: Array<AST.Refinement> = [ast]
      let base = ast.from
      while (base._tag === "Refinement" && !hasParseAnnotations(base)) {
        chain.unshift(base)
        base = base.from
      }
      const from = compile(base)
      if (from === undefined) return undefined
      const count = chain.length
      return (input) => {
        const a = from(input)
        if (a === invalid || a === undecided) return a
        for (let i = 0; i < count; i++) {
          const refinement = chain[i]!
          if (!Option.isNone(refinement.filter(a, parseOptions, refinement))) return invalid
        }
        return a
      }
    }
    case "Transformation": {
      const from = compile(ast.from)
      const to = compile(ast.to)
      if (from === undefined || to === undefined) return undefined
      const transformation = ast.transformation
      if (transformation._tag === "ComposeTransformation") {
        return (input) => {
          const a = from(input)
          return a === invalid || a === undecided ? a : to(a)
        }
      }
      if (transformation._tag !== "FinalTransformation") return undefined
      return (input) => {
        const a = from(input)
        if (a === invalid || a === undecided) return a
        return settled(transformation.decode(a, parseOptions, ast, input), to)
      }
    }
    case "Declaration": {
      const parse = ast.decodeUnknown(...ast.typeParameters)
      return (input) => settled(parse(input, parseOptions, ast), identity)
    }
    case "TypeLiteral": {
      if (ast.indexSignatures.length > 0 || ast.propertySignatures.length === 0) return undefined
      const signatures = ast.propertySignatures
      const names = signatures.map((ps) => ps.name)
      const optional = signatures.map((ps) => ps.isOptional)
      const types = signatures.map((ps) => compile(ps.type))
      if (types.some((type) => type === undefined)) return undefined
      const steps = types as Array<Step>
      const count = names.length
      return (input) => {
        if (typeof input !== "object" || input === null || Array.isArray(input)) return invalid
        // Schema's default: only the declared properties, in their declared order; an absent optional key
        // stays absent; an absent required one is decoded as `undefined` (and fails unless the type allows it).
        const output: Record<PropertyKey, unknown> = {}
        for (let i = 0; i < count; i++) {
          const name = names[i]!
          if (optional[i] && !hasOwn.call(input, name)) continue
          const value = steps[i]!((input as Record<PropertyKey, unknown>)[name])
          if (value === invalid || value === undecided) return value
          output[name] = value
        }
        return output
      }
    }
    default:
      return undefined
  }
}

const identity: Step = (a) => a

/** Annotations that change how Schema parses a node (its parse options, a fallback): not reproduced. */
const hasParseAnnotations = (ast: AST.AST): boolean =>
  Option.isSome(AST.getParseOptionsAnnotation(ast)) || Option.isSome(AST.getDecodingFallbackAnnotation(ast))

/** The outcome of a transformation or declaration: `Either`s are settled here; any other effect is `undecided`. */
const settled = (result: unknown, then: Step): unknown => {
  if (!Either.isEither(result)) return undecided
  return Either.isRight(result) ? then(result.right) : invalid
}

/** Whether `ast` decodes to its input unchanged whenever it accepts it. */
const isIdentity = (ast: AST.AST): boolean => {
  switch (ast._tag) {
    case "StringKeyword":
    case "NumberKeyword":
    case "BooleanKeyword":
    case "UndefinedKeyword":
    case "UnknownKeyword":
    case "AnyKeyword":
    case "Literal":
      return true
    case "Refinement":
      return isIdentity(ast.from)
    case "Union":
      return ast.types.every(isIdentity)
    default:
      return false
  }
}
