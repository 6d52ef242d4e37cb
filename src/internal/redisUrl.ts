/**
 * Reading a `redis://` / `rediss://` URL without ever repeating it.
 *
 * The URL usually carries the password, so a reason for refusing it names the part that is wrong, never its
 * text; and the URL is parsed here rather than by ioredis or `new URL`, whose failures (`TypeError: Invalid
 * URL`, with the whole input attached) would otherwise escape as defects carrying the secret.
 *
 * @internal
 */
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"

/** Where and how to connect, from a URL. */
export interface Endpoint {
  readonly host: string
  readonly port: number
  readonly db: number
  readonly username: string | undefined
  readonly password: Redacted.Redacted | undefined
  /** `rediss://`: TLS. */
  readonly tls: boolean
}

const shape = /^(rediss?):\/\/(?:([^@/?#]*)@)?([^/?#]*)(\/[^?#]*)?([?#].*)?$/i
const hostName = /^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/
const ipv6 = /^\[[0-9A-Fa-f:.]+\]$/

const decode = (part: string, what: string): Either.Either<string, string> => {
  try {
    return Either.right(decodeURIComponent(part))
  } catch {
    return Either.left(`the ${what} is not valid percent-encoding`)
  }
}

/**
 * The endpoint of `url`, or why it is not a Redis URL: `redis://[[user]:password@]host[:port][/db]`, with
 * `rediss://` for TLS. The reason never contains any part of the URL.
 */
export const parseRedisUrl = (url: string): Either.Either<Endpoint, string> =>
  Either.gen(function*() {
    const match = shape.exec(url.trim())
    if (match === null) {
      return yield* Either.left(
        /^[a-z][a-z0-9+.-]*:\/\//i.test(url.trim()) && !/^rediss?:/i.test(url.trim())
          ? "the scheme must be redis:// or rediss://"
          : "it is not of the form redis://[[user]:password@]host[:port][/db]"
      )
    }
    const [, scheme, userInfo, hostPort, path, rest] = match
    if (rest !== undefined) return yield* Either.left("query parameters and fragments are not supported")
    let username: string | undefined
    let password: Redacted.Redacted | undefined
    if (userInfo !== undefined) {
      const colon = userInfo.indexOf(":")
      const user = yield* decode(colon < 0 ? userInfo : userInfo.slice(0, colon), "user name")
      username = user === "" ? undefined : user
      if (colon >= 0) password = Redacted.make(yield* decode(userInfo.slice(colon + 1), "password"))
    }
    const portAt = hostPort!.startsWith("[") ? hostPort!.indexOf("]:") + 1 : hostPort!.lastIndexOf(":")
    const host = portAt > 0 ? hostPort!.slice(0, portAt) : hostPort!
    const portText = portAt > 0 ? hostPort!.slice(portAt + 1) : ""
    if (host === "") return yield* Either.left("it names no host")
    if (!hostName.test(host) && !ipv6.test(host)) return yield* Either.left("the host is not a valid host name or address")
    const port = portText === "" ? 6379 : Number(portText)
    if (!/^\d{1,5}$/.test(portText === "" ? "6379" : portText) || port < 1 || port > 65535) {
      return yield* Either.left("the port must be a number from 1 to 65535")
    }
    const dbText = path === undefined || path === "/" ? "0" : path.slice(1)
    if (!/^\d{1,9}$/.test(dbText)) return yield* Either.left("the path must be a database number, such as /0")
    return {
      host: host.startsWith("[") ? host.slice(1, -1) : host,
      port,
      db: Number(dbText),
      username,
      password,
      tls: scheme!.toLowerCase() === "rediss"
    }
  })

/** `host:port`, with `/db` when it is not 0: an address for messages, without credentials. */
export const addressOf = (endpoint: Endpoint): string =>
  `${endpoint.host.includes(":") ? `[${endpoint.host}]` : endpoint.host}:${endpoint.port}${
    endpoint.db === 0 ? "" : `/${endpoint.db}`
  }`
