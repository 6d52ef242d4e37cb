/**
 * `npm run build` produces a package a consumer can import: built into a temporary folder, installed as
 * `node_modules/@rms/cache` of a throwaway consumer that has only what an installer brings (effect and
 * ioredis: no @effect/sql, no @effect/platform, no PGlite), imported by Node and type-checked by tsc. And
 * `npm pack` in a fresh clone builds `dist` before packing it.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))

/**
 * Runs a command and resolves with its output. Not `execFileSync`: a build blocks for a minute on a busy machine,
 * and a worker blocked that long misses vitest's own messages (a "Timeout calling onTaskUpdate" failure).
 */
const run = (command: string, args: ReadonlyArray<string>, cwd?: string): Promise<string> =>
  new Promise((resolve, reject) =>
    execFile(command, args, { cwd, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
      error === null ? resolve(stdout) : reject(new Error(`${error.message}\n${stdout}\n${stderr}`))
    )
  )
const tsc = join(root, "node_modules/typescript/bin/tsc")

describe("the built package", () => {
  it("is importable by an ESM consumer through its exports map, with declarations", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rms-cache-consumer-"))
    try {
      const pkg = join(dir, "node_modules/@rms/cache")
      mkdirSync(pkg, { recursive: true })
      await run(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", join(pkg, "dist")])
      cpSync(join(root, "package.json"), join(pkg, "package.json"))
      // What an installer would bring: the dependencies and the required peers (optional peers stay out).
      const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
        dependencies: Record<string, string>
        peerDependencies: Record<string, string>
        peerDependenciesMeta?: Record<string, { optional?: boolean }>
      }
      const wanted = [
        ...Object.keys(manifest.dependencies),
        ...Object.keys(manifest.peerDependencies).filter((name) => !manifest.peerDependenciesMeta?.[name]?.optional),
        "@types/node"
      ]
      for (const name of wanted) {
        mkdirSync(join(dir, "node_modules", name, ".."), { recursive: true })
        symlinkSync(join(root, "node_modules", name), join(dir, "node_modules", name), "dir")
      }
      writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module" }))

      // Nothing of the SQL side is there: the root entry must not load it.
      for (const absent of ["@effect/sql", "@effect/sql-pg", "@effect/platform", "@electric-sql/pglite", "@effect/opentelemetry", "@opentelemetry/api"]) {
        expect(existsSync(join(dir, "node_modules", absent))).toBe(false)
      }

      const program = `
        import { Effect } from "effect"
        import { Cache, CachedStore, LruCache } from "@rms/cache"
        import * as TtlCache from "@rms/cache/TtlCache"
        class Names extends Cache.Tag("consumer/Names")<Names, number, string>() {}
        const lru = Effect.gen(function*() {
          const names = yield* Names
          yield* names.set(1, "Ada")
          const miss = yield* names.get(2).pipe(Effect.catchTag("CacheMiss", (e) => Effect.succeed("miss " + e.key)))
          return [yield* names.get(1), miss, typeof TtlCache.layer].join(",")
        })
        interface Book { readonly id: string; readonly title: string; readonly version: number }
        const rows = new Map<string, Book>()
        const books = Effect.gen(function*() {
          const store = yield* CachedStore.make({
            name: "books",
            store: {
              getMany: (ids: ReadonlyArray<string>) =>
                Effect.sync(() => {
                  const found = new Map<string, Book>()
                  for (const id of ids) {
                    const book = rows.get(id)
                    if (book !== undefined) found.set(id, book)
                  }
                  return found
                }),
              save: (input: { readonly id: string; readonly title: string }) =>
                Effect.sync(() => {
                  const book = { ...input, version: (rows.get(input.id)?.version ?? 0) + 1 }
                  rows.set(book.id, book)
                  return book
                }),
              remove: (id: string) => Effect.sync(() => void rows.delete(id))
            },
            keyOf: (input) => input.id,
            tiers: [yield* LruCache.make<string, Book>({ capacity: 10 })]
          })
          yield* store.save({ id: "b1", title: "Dune" })
          const read = yield* store.get("b1")
          yield* store.delete("b1")
          const gone = yield* store.get("b1").pipe(Effect.catchTag("CacheMiss", () => Effect.succeed("gone")))
          return read.title + "@" + read.version + "," + gone
        })
        const out: string = await Effect.runPromise(
          Effect.zipWith(
            lru.pipe(Effect.provide(LruCache.layer(Names, { capacity: 2 }))),
            Effect.scoped(books),
            (a, b) => a + "," + b
          )
        )
        console.log(out)
      `
      writeFileSync(join(dir, "consumer.ts"), program)

      writeFileSync(
        join(dir, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            target: "ES2022",
            module: "NodeNext",
            moduleResolution: "NodeNext",
            strict: true,
            exactOptionalPropertyTypes: true,
            outDir: "out",
            types: ["node"]
          },
          files: ["consumer.ts"]
        })
      )

      // Type-checks against the emitted declarations (throws with tsc's output if not), then runs.
      await run(process.execPath, [tsc, "-p", join(dir, "tsconfig.json")], dir)
      expect((await run(process.execPath, ["out/consumer.js"], dir)).trim()).toBe(
        "Ada,miss 2,function,Dune@1,gone"
      )
      // Internals stay private.
      await expect(run(process.execPath, ["--input-type=module", "-e", `import "@rms/cache/internal/lruMap"`], dir))
        .rejects.toThrow(/ERR_PACKAGE_PATH_NOT_EXPORTED/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)

  it("is built by npm pack in a fresh clone (prepack), with dist and without tests", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rms-cache-pack-"))
    try {
      const clone = join(dir, "clone")
      await run("git", ["clone", "--quiet", "--no-hardlinks", root, clone])
      // The working tree's sources, committed or not: what is tested is what would be packed.
      for (const path of ["src", "package.json", "tsconfig.base.json", "tsconfig.build.json"]) {
        rmSync(join(clone, path), { recursive: true, force: true })
        cpSync(join(root, path), join(clone, path), { recursive: true })
      }
      symlinkSync(join(root, "node_modules"), join(clone, "node_modules"), "dir")
      expect(existsSync(join(clone, "dist"))).toBe(false)
      const [packed] = JSON.parse(
        await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts=false"], clone)
      ) as Array<{ readonly files: ReadonlyArray<{ readonly path: string }> }>
      const files = packed!.files.map((file) => file.path)
      expect(files).toContain("dist/index.js")
      expect(files).toContain("dist/index.d.ts")
      expect(files).toContain("dist/CachedStore.js")
      expect(files.some((file) => file.startsWith("test/"))).toBe(false)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)
})
