/**
 * `npm run serve`: an HTTP service over `TaskRepository`.
 *
 *   GET    /tasks/:id   200 the task | 404 not found | 400 bad id
 *   PUT    /tasks/:id   body {"title", "status", "assignee"?} → 200 the saved task | 400 with the reason
 *   DELETE /tasks/:id   204 | 404
 *   GET    /metrics     every Effect metric (the caches' included) in the Prometheus text format (`Prometheus.text`)
 *
 * Embedded Postgres and an in-memory L2 by default; `DATABASE_URL` / `REDIS_URL` switch to real servers.
 * `PORT` (default 3000; 0 picks a free one) sets the port.
 *
 * Facing the network (examples/support/http.ts): a body must be `application/json` (415 otherwise), UTF-8 and
 * nested at most 32 deep (400), and at most `HTTP_MAX_BODY_BYTES` (default 1 MiB; 413, at once when declared
 * larger); a client slower than `HTTP_HEADERS_TIMEOUT_MS` / `HTTP_REQUEST_TIMEOUT_MS` (10 s / 30 s) to send its
 * request is cut off (408); a malformed path is a 400; a 400 quotes at most 200 characters of each issue; an
 * unexpected failure is logged and answered with a JSON 500.
 */
import { HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { Config, Effect, Layer, Schema } from "effect"
import * as Prometheus from "../src/Prometheus.js"
import { Task, TaskBody, TaskId, TaskInput } from "../src/Task.js"
import { TaskRepository } from "../src/TaskRepository.js"
import * as Http from "./support/http.js"
import { RepositoryLive } from "./support/repository.js"

const Params = Schema.Struct({ id: TaskId })
const taskJson = HttpServerResponse.schemaJson(Task)

const router = HttpRouter.empty.pipe(
  HttpRouter.get(
    "/tasks/:id",
    Effect.gen(function*() {
      const { id } = yield* HttpRouter.schemaPathParams(Params)
      const task = yield* Effect.flatMap(TaskRepository, (repo) => repo.get(id))
      return yield* taskJson(task)
    })
  ),
  HttpRouter.put(
    "/tasks/:id",
    Effect.gen(function*() {
      const { id } = yield* HttpRouter.schemaPathParams(Params)
      const body = yield* Http.schemaBodyJson(TaskBody)
      const saved = yield* Effect.flatMap(TaskRepository, (repo) => repo.save(new TaskInput({ ...body, id })))
      return yield* taskJson(saved)
    })
  ),
  HttpRouter.del(
    "/tasks/:id",
    Effect.gen(function*() {
      const { id } = yield* HttpRouter.schemaPathParams(Params)
      yield* Effect.flatMap(TaskRepository, (repo) => repo.delete(id))
      return HttpServerResponse.empty({ status: 204 })
    })
  ),
  HttpRouter.get(
    "/metrics",
    Effect.map(Prometheus.text, (text) => HttpServerResponse.text(text, { contentType: Prometheus.contentType }))
  ),
  HttpRouter.catchTags({
    ParseError: Http.invalidRequest,
    TaskNotFound: (error) => HttpServerResponse.json({ error: error.message }, { status: 404 }),
    StoreError: (error) =>
      Effect.zipRight(
        Effect.logError("task store failed", error),
        HttpServerResponse.json({ error: "the task store is unavailable" }, { status: 503 })
      )
  })
)

const ServerLive = Layer.unwrapEffect(
  Effect.map(Config.integer("PORT").pipe(Config.withDefault(3000)), (port) =>
    Http.layerNodeServer({ port, host: "127.0.0.1" }))
)

// The body limit, unsupported media types and malformed bodies are answered by their errors themselves (413,
// 415, 400: they are `Respondable`); `harden` adds the checks made before routing and the JSON 500.
HttpServer.serve(Http.harden(router)).pipe(
  HttpServer.withLogAddress,
  // The router drops paths with a parameter over 100 characters as "not found"; let the id's own schema say
  // what is wrong with a long one instead.
  Layer.provide(HttpRouter.setRouterConfig({ maxParamLength: 16_384 })),
  Layer.provide(ServerLive),
  Layer.provide(RepositoryLive),
  Layer.launch,
  NodeRuntime.runMain
)
