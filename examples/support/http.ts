/**
 * What the HTTP example service needs to face careless and hostile clients, kept out of its routes:
 *
 * - `HttpLimits`: the body limit and the timeouts, from the environment: `HTTP_MAX_BODY_BYTES` (default 1 MiB),
 *   `HTTP_HEADERS_TIMEOUT_MS` (default 10 s), `HTTP_REQUEST_TIMEOUT_MS` (default 30 s).
 * - `layerNodeServer`: a Node HTTP server that enforces the timeouts: a client still sending its headers or its
 *   body when they run out gets a 408 and its connection closed.
 * - `harden`: around the whole app. Before routing, a request that declares a body over the limit gets a 413 (and
 *   its connection closed) and a path with a malformed percent escape a 400; after, a defect is logged and
 *   answered with a JSON 500.
 * - `schemaBodyJson`: the body of the request decoded with a schema, taken only as `application/json` (415),
 *   read up to the limit and no further (413, connection closed), then required to be UTF-8, JSON, and nested
 *   at most `maxJsonDepth` deep (400).
 * - `invalidRequest`: a `ParseError` as a 400 that echoes a bounded part of what was sent.
 *
 * The body is read from Node's `IncomingMessage` rather than with the platform's `request.text` /
 * `HttpIncomingMessage.withMaxBodySize`: past that limit the platform destroys the request, which resets the
 * connection so the client never sees a 413, and it decodes UTF-8 leniently (invalid bytes become U+FFFD).
 */
import { HttpServerRequest, HttpServerRespondable, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer, NodeHttpServerRequest } from "@effect/platform-node"
import { Cause, Config, Context, Data, Effect, Layer, ParseResult, Schema, Stream } from "effect"
import { createServer, type IncomingMessage } from "node:http"

/** The limits a request is held to. */
export class HttpLimits extends Context.Tag("examples/support/http/HttpLimits")<HttpLimits, {
  /** The largest request body read, in bytes. */
  readonly maxBodyBytes: number
  /** How long a client may take to send its request line and headers. */
  readonly headersTimeoutMs: number
  /** How long a client may take to send its whole request, body included. */
  readonly requestTimeoutMs: number
}>() {}

const positiveInteger = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.validate({ message: "must be a positive integer", validation: (n) => n > 0 }),
    Config.withDefault(fallback)
  )

/** `HttpLimits` from the environment. */
export const limitsConfig: Config.Config<Context.Tag.Service<HttpLimits>> = Config.all({
  maxBodyBytes: positiveInteger("HTTP_MAX_BODY_BYTES", 1_048_576),
  headersTimeoutMs: positiveInteger("HTTP_HEADERS_TIMEOUT_MS", 10_000),
  requestTimeoutMs: positiveInteger("HTTP_REQUEST_TIMEOUT_MS", 30_000)
}).pipe(
  // Node throws at `createServer` otherwise; said here, by name, instead.
  Config.validate({
    message: "HTTP_HEADERS_TIMEOUT_MS must not be longer than HTTP_REQUEST_TIMEOUT_MS",
    validation: (limits) => limits.headersTimeoutMs <= limits.requestTimeoutMs
  })
)

/** `HttpLimits` read from the environment. */
export const layerLimits = Layer.effect(HttpLimits, limitsConfig)

/**
 * A Node HTTP server listening on `listen`, with its timeouts from `HttpLimits` (provided too, for `harden` and
 * `schemaBodyJson`). Node checks for expired requests every `connectionsCheckingInterval` (30 s by default, which
 * would let a slow client hold on for that much longer): every second here.
 */
export const layerNodeServer = (listen: { readonly port: number; readonly host: string }) =>
  Layer.unwrapEffect(
    Effect.map(HttpLimits, ({ headersTimeoutMs, requestTimeoutMs }) =>
      NodeHttpServer.layer(
        () =>
          createServer({
            headersTimeout: headersTimeoutMs,
            requestTimeout: requestTimeoutMs,
            connectionsCheckingInterval: Math.min(1_000, headersTimeoutMs)
          }),
        listen
      ))
  ).pipe(Layer.provideMerge(layerLimits))

/** How deep arrays and objects may nest in a JSON body: deeper is refused before parsing or decoding. */
export const maxJsonDepth = 32
/** How many validation issues a 400 lists. */
export const maxIssues = 20
/** How many characters of a validation message (or path) a 400 echoes. */
const maxEcho = 200

/** `text` cut to `max` characters and marked "…" when longer (never splitting a surrogate pair). */
const truncate = (text: string, max = maxEcho) => {
  if (text.length <= max) return text
  const end = /[\ud800-\udbff]/.test(text[max - 1]!) ? max - 1 : max
  return `${text.slice(0, end)}…`
}

const json = (body: unknown, status: number) => HttpServerResponse.unsafeJson(body, { status })

/**
 * How long a connection refused with 413 stays open after the answer, the rest of its body unread, before the
 * server closes it. Closing at once, with the client's bytes still arriving, makes the server's TCP reset the
 * connection, and a client still busy writing its body then often loses the 413 it had been sent (it sees only
 * the reset). Meanwhile nothing is read: TCP holds the client back, and one that reads the 413 stops sending.
 */
const closeDelayMs = 1_000

/**
 * The body is over `HttpLimits.maxBodyBytes`: 413 with `Connection: close`. The connection is closed (after
 * `closeDelayMs`) rather than the rest of the body read.
 */
export class PayloadTooLarge extends Data.TaggedError("PayloadTooLarge")<{ readonly limit: number }>
  implements HttpServerRespondable.Respondable
{
  override get message() {
    return `the request body is larger than ${this.limit} bytes`
  }
  [HttpServerRespondable.symbol]() {
    const body = new TextEncoder().encode(JSON.stringify({ error: this.message }))
    // The whole answer goes out at once (its length is declared); the response ends, and Node closes the
    // connection, only once the delay is over or the client has gone.
    return Effect.succeed(HttpServerResponse.stream(
      Stream.concat(Stream.make(body), Stream.execute(Effect.sleep(closeDelayMs))),
      { status: 413, contentType: "application/json", contentLength: body.length, headers: { connection: "close" } }
    ))
  }
}

/** The body is not declared `application/json` (UTF-8): 415. */
export class UnsupportedMediaType extends Data.TaggedError("UnsupportedMediaType")<{
  readonly contentType: string | undefined
}> implements HttpServerRespondable.Respondable {
  override get message() {
    const given = this.contentType === undefined ? "none" : JSON.stringify(truncate(this.contentType, 100))
    return `the request body must be application/json (UTF-8); the content type was ${given}`
  }
  [HttpServerRespondable.symbol]() {
    return Effect.succeed(json({ error: this.message }, 415))
  }
}

/** The request cannot be read as what it claims to be (path, UTF-8, JSON, nesting): 400 with the reason. */
export class MalformedRequest extends Data.TaggedError("MalformedRequest")<{ readonly reason: string }>
  implements HttpServerRespondable.Respondable
{
  override get message() {
    return this.reason
  }
  [HttpServerRespondable.symbol]() {
    return Effect.succeed(json({ error: this.reason }, 400))
  }
}

/** The first segment of the path of `url` that is not percent-encoded UTF-8, if any. */
const malformedSegment = (url: string) => {
  const end = url.search(/[?#]/)
  return (end === -1 ? url : url.slice(0, end)).split("/").find((segment) => {
    try {
      decodeURIComponent(segment)
      return false
    } catch {
      return true
    }
  })
}

const internalServerError = json({ error: "internal server error" }, 500)

/**
 * `app` behind the checks that need no route: a declared body over the limit is refused before any of it is
 * read, and a malformed percent escape gets a 400 that says so (the router would answer an empty 404). A defect
 * (a bug, or a formatter that throws) becomes a JSON 500 and is logged; without this it would be an empty 500
 * and nothing in the log.
 */
export const harden = <E, R>(app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const { maxBodyBytes } = yield* HttpLimits
    return yield* Effect.gen(function*() {
      const declared = request.headers["content-length"]
      if (declared !== undefined && Number(declared) > maxBodyBytes) {
        return yield* new PayloadTooLarge({ limit: maxBodyBytes })
      }
      const malformed = malformedSegment(request.url)
      if (malformed !== undefined) {
        const at = JSON.stringify(truncate(malformed, 100))
        const reason = `the request path is not valid percent-encoding of UTF-8 at ${at}`
        return yield* new MalformedRequest({ reason })
      }
      return yield* app
    }).pipe(
      Effect.catchAllDefect((defect) =>
        HttpServerResponse.isServerResponse(defect)
          ? Effect.succeed(defect) // a handler that dies with a response means that response
          : Effect.logError("unexpected failure while handling a request", Cause.die(defect)).pipe(
            Effect.annotateLogs({ method: request.method, url: truncate(request.url) }),
            Effect.as(internalServerError)
          )
      )
    )
  })

/** Whether a Content-Type is `application/json`, in any case, with no charset but UTF-8. */
const isJsonUtf8 = (contentType: string) => {
  const [essence = "", ...parameters] = contentType.split(";")
  return essence.trim().toLowerCase() === "application/json" &&
    parameters.every((parameter) => {
      const [name = "", value = ""] = parameter.split("=")
      return name.trim().toLowerCase() !== "charset" || /^"?utf-?8"?$/i.test(value.trim())
    })
}

/**
 * The body of `incoming`, refused past `limit` bytes, holding at most `limit` of it. Past it, the request is
 * paused and left unread: the socket buffers fill, TCP holds the client back, and the 413 (`PayloadTooLarge`)
 * closes the connection rather than draining the rest of what the client would send.
 */
const readBody = (incoming: IncomingMessage, limit: number) =>
  Effect.async<Buffer, PayloadTooLarge | MalformedRequest>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const stop = () => {
      incoming.off("data", onData)
      incoming.off("end", onEnd)
      incoming.off("error", onError)
    }
    function onData(chunk: Buffer) {
      size += chunk.length
      if (size <= limit) {
        chunks.push(chunk)
        return
      }
      stop()
      incoming.pause()
      resume(Effect.fail(new PayloadTooLarge({ limit })))
    }
    function onEnd() {
      stop()
      resume(Effect.succeed(Buffer.concat(chunks, size)))
    }
    function onError() {
      stop()
      resume(Effect.fail(new MalformedRequest({ reason: "the request body could not be read" })))
    }
    if (incoming.readableEnded) {
      return resume(Effect.dieMessage("the request body was already read"))
    }
    incoming.on("data", onData)
    incoming.once("end", onEnd)
    incoming.once("error", onError)
    return Effect.sync(stop)
  })

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** Whether arrays and objects in JSON `text` nest deeper than `limit`: one pass over the text, no recursion. */
const nestsDeeperThan = (text: string, limit: number) => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // a backslash: skip what it escapes
      else if (c === 0x22) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true
    } else if (c === 0x5d || c === 0x7d) {
      depth--
    }
  }
  return false
}

/**
 * The JSON body of the request: `application/json` only, at most `HttpLimits.maxBodyBytes`, strict UTF-8, and
 * nested at most `maxJsonDepth` deep (a deeper value would overflow the stack of whatever walks it later, the
 * validation-error formatter first).
 */
export const bodyJson: Effect.Effect<
  unknown,
  UnsupportedMediaType | PayloadTooLarge | MalformedRequest,
  HttpServerRequest.HttpServerRequest | HttpLimits
> = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const contentType = request.headers["content-type"]
  if (contentType === undefined || !isJsonUtf8(contentType)) {
    return yield* new UnsupportedMediaType({ contentType })
  }
  const { maxBodyBytes } = yield* HttpLimits
  const bytes = yield* readBody(NodeHttpServerRequest.toIncomingMessage(request), maxBodyBytes)
  const text = yield* Effect.try({
    try: () => utf8.decode(bytes),
    catch: () => new MalformedRequest({ reason: "the request body is not valid UTF-8" })
  })
  if (nestsDeeperThan(text, maxJsonDepth)) {
    return yield* new MalformedRequest({ reason: `the request body is nested deeper than ${maxJsonDepth} levels` })
  }
  return yield* Effect.try({
    try: (): unknown => JSON.parse(text),
    catch: (error) =>
      new MalformedRequest({
        reason: `the request body is not valid JSON (${truncate(error instanceof Error ? error.message : `${error}`)})`
      })
  })
})

/** The JSON body of the request (see `bodyJson`) decoded with `schema`, every issue reported. */
export const schemaBodyJson = <A, I, R>(schema: Schema.Schema<A, I, R>) =>
  Effect.flatMap(bodyJson, Schema.decodeUnknown(schema, { errors: "all" }))

/**
 * A `ParseError` as a 400, `{ error: "invalid request", issues: [{ path, message }] }`: at most `maxIssues`
 * issues (`omittedIssues` counts the rest), each path and message cut to 200 characters, as a message may quote
 * the whole rejected value. Should formatting fail, the 400 still goes out, with one generic issue.
 */
export const invalidRequest = (error: ParseResult.ParseError) =>
  Effect.try(() => ParseResult.ArrayFormatter.formatErrorSync(error)).pipe(
    Effect.map((issues) => ({
      error: "invalid request",
      issues: issues.slice(0, maxIssues).map(({ message, path }) => ({
        path: truncate(path.map(String).join(".")),
        message: truncate(message)
      })),
      ...(issues.length > maxIssues ? { omittedIssues: issues.length - maxIssues } : {})
    })),
    Effect.catchAll((failure) =>
      Effect.as(Effect.logWarning("a validation error could not be formatted", failure), {
        error: "invalid request",
        issues: [{ path: "", message: "the request does not have the expected shape" }]
      })
    ),
    Effect.map((body) => json(body, 400))
  )
