/**
 * `npm run build` produces a package a consumer can import: built into a temporary folder, installed as
 * `node_modules/@rms/cache` of a throwaway consumer, imported by Node and type-checked by tsc.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const tsc = join(root, "node_modules/typescript/bin/tsc")

describe("the built package", () => {
  it("is importable by an ESM consumer through its exports map, with declarations", () => {
    const dir = mkdtempSync(join(tmpdir(), "rms-cache-consumer-"))
    try {
      const pkg = join(dir, "node_modules/@rms/cache")
      mkdirSync(pkg, { recursive: true })
      execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", join(pkg, "dist")])
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

      const program = `
        import { Effect } from "effect"
        import { Cache, LruCache } from "@rms/cache"
        import * as TtlCache from "@rms/cache/TtlCache"
        class Names extends Cache.Tag("consumer/Names")<Names, number, string>() {}
        const program = Effect.gen(function*() {
          const names = yield* Names
          yield* names.set(1, "Ada")
          const miss = yield* names.get(2).pipe(Effect.catchTag("CacheMiss", (e) => Effect.succeed("miss " + e.key)))
          return [yield* names.get(1), miss, typeof TtlCache.layer].join(",")
        })
        const out: string = await Effect.runPromise(program.pipe(Effect.provide(LruCache.layer(Names, { capacity: 2 }))))
        console.log(out)
      `
      writeFileSync(join(dir, "consumer.ts"), program)
      writeFileSync(join(dir, "consumer.mjs"), program.replace(/<Names, number, string>/, "").replace(": string", ""))
      writeFileSync(
        join(dir, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            target: "ES2022",
            module: "NodeNext",
            moduleResolution: "NodeNext",
            strict: true,
            exactOptionalPropertyTypes: true,
            noEmit: true,
            types: ["node"]
          },
          files: ["consumer.ts"]
        })
      )

      expect(execFileSync(process.execPath, ["consumer.mjs"], { cwd: dir, encoding: "utf8" }).trim()).toBe(
        "Ada,miss 2,function"
      )
      // Type-checks against the emitted declarations (throws with tsc's output if not).
      execFileSync(process.execPath, [tsc, "-p", join(dir, "tsconfig.json")], { cwd: dir, encoding: "utf8" })
      // Internals stay private.
      expect(() =>
        execFileSync(process.execPath, ["--input-type=module", "-e", `import "@rms/cache/internal/lruMap"`], {
          cwd: dir,
          stdio: "pipe"
        })
      ).toThrow(/ERR_PACKAGE_PATH_NOT_EXPORTED/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)
})
