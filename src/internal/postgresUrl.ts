/**
 * Checking a `postgres://` URL without ever repeating it: it usually carries the password, so the reason for
 * refusing one names the part that is wrong, never its text.
 *
 * @internal
 */
import * as Either from "effect/Either"

const hostName = /^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/
const ipv6 = /^\[[0-9A-Fa-f:.]+\]$/
const shape = /^(postgres|postgresql):\/\/(?:([^@/?#]*)@)?([^/?#]*)(\/[^?#]*)?(\?[^#]*)?$/i

/** Why `url` is not a Postgres connection URL, or `undefined` when it is one. */
export const postgresUrlProblem = (url: string): string | undefined => {
  const match = shape.exec(url.trim())
  if (match === null) {
    return /^[a-z][a-z0-9+.-]*:\/\//i.test(url.trim()) && !/^postgres(ql)?:/i.test(url.trim())
      ? "the scheme must be postgres:// or postgresql://"
      : "it is not of the form postgres://[user[:password]@]host[:port]/database"
  }
  const [, , userInfo, hostPort, , query] = match
  try {
    if (userInfo !== undefined) decodeURIComponent(userInfo)
  } catch {
    return "the user name or password is not valid percent-encoding"
  }
  // Several hosts (`h1:5432,h2:5432`) and a socket directory in `?host=` are both valid.
  if (hostPort === "" && !(query ?? "").includes("host=")) return "it names no host"
  for (const part of hostPort === "" ? [] : hostPort!.split(",")) {
    const portAt = part.startsWith("[") ? part.indexOf("]:") + 1 : part.lastIndexOf(":")
    const host = portAt > 0 ? part.slice(0, portAt) : part
    const port = portAt > 0 ? part.slice(portAt + 1) : ""
    if (!hostName.test(host) && !ipv6.test(host)) return "a host is not a valid host name or address"
    if (port !== "" && (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)) {
      return "the port must be a number from 1 to 65535"
    }
  }
  return undefined
}

/** `Either.right(url)` when `url` is a Postgres URL, else the reason (without the URL). */
export const checkPostgresUrl = <A>(url: A, text: string): Either.Either<A, string> => {
  const problem = postgresUrlProblem(text)
  return problem === undefined ? Either.right(url) : Either.left(problem)
}
