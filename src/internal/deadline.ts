/**
 * Bounded calls without a timer fiber per call. `Effect.timeout*` races the call against a sleeping fiber: two
 * forks, a timer and a join for every guarded tier call (tens of µs). Here one watchdog fiber per tier sleeps,
 * on the tier's `Clock` (so `TestClock` drives it), until the earliest deadline that is still open, and expires
 * what is due; a call only registers its deadline.
 *
 * What "expire" does depends on the call:
 * - A tier that declares `honoursDeadlines` (the Redis tier) runs its calls in the caller's fiber: each of its
 *   waits on the backend is a `deadlineLeaf`, which reads the fiber's current deadline and gives up waiting
 *   (failing with a `TimeoutException`) when it expires. No fiber at all.
 * - Any other tier's call runs in a fiber of its own, interrupted when its deadline expires: one fork, still
 *   no timer fiber.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"

/**
 * Mutable by design: the instant (`Clock` milliseconds) a call must be over by, and the waits that give up
 * when it passes. `done` once the call is over: a deadline left in a fiber's ref then bounds nothing.
 */
export class Deadline {
  expired = false
  done = false
  private aborts: Set<() => void> | undefined = undefined

  constructor(readonly at: number, readonly describe: () => string) {}

  /** Registers `abort`, called if the deadline passes first; `false` (nothing registered) if it has. */
  watch(abort: () => void): boolean {
    if (this.expired) return false
    ;(this.aborts ??= new Set()).add(abort)
    return true
  }

  unwatch(abort: () => void): void {
    this.aborts?.delete(abort)
  }

  /** The deadline has passed: every wait still registered gives up. */
  expire(): void {
    if (this.done || this.expired) return
    this.expired = true
    const aborts = this.aborts
    this.aborts = undefined
    if (aborts !== undefined) for (const abort of aborts) abort()
  }

  timeout(): Cause.TimeoutException {
    return new Cause.TimeoutException(this.describe())
  }
}

/** The deadline of the guarded call a fiber is running, if any (see `Deadline.done`). */
export const currentDeadline: FiberRef.FiberRef<Deadline | undefined> = globalValue(
  Symbol.for("@rms/cache/currentDeadline"),
  () => FiberRef.unsafeMake<Deadline | undefined>(undefined)
)

/**
 * Mutable by design: the open deadlines of one tier, in the order they were armed, and the fiber that expires
 * them. A tier's calls all get the same timeout, so that order is the order they fall due in: the watchdog only
 * looks at the head. Deadlines of calls that ended stay queued until the head reaches them (a few thousand at
 * most for a timeout of a second): removing them one by one would cost every call more than skipping them costs
 * the watchdog.
 */
export class Watchdog {
  private queue: Array<Deadline> = []
  private head = 0
  private running = false
  /** Resumes the watchdog when it waits for a deadline to be armed. */
  private parked: (() => void) | undefined = undefined

  constructor(
    private readonly clock: Clock.Clock,
    private readonly scope: Scope.Scope,
    /** The tier's timeout: the longest the watchdog ever sleeps, whatever the wall clock does meanwhile. */
    private readonly timeoutMillis: number,
    private readonly describe: () => string
  ) {}

  /** A deadline `timeoutMillis` from now, watched from now on. */
  arm(): Deadline {
    const deadline = new Deadline(this.clock.unsafeCurrentTimeMillis() + this.timeoutMillis, this.describe)
    this.queue.push(deadline)
    if (!this.running) this.start()
    else if (this.parked !== undefined) {
      const wake = this.parked
      this.parked = undefined
      wake()
    }
    return deadline
  }

  /** Expires what is due; the wait until the next deadline (`undefined`: none is open). */
  private expireDue(): number | undefined {
    const now = this.clock.unsafeCurrentTimeMillis()
    const { queue } = this
    while (this.head < queue.length) {
      const deadline = queue[this.head]!
      if (!deadline.done && deadline.at > now) break
      deadline.expire()
      this.head++
    }
    if (this.head === queue.length) {
      this.queue = []
      this.head = 0
      return undefined
    }
    if (this.head > 1024 && this.head * 2 > queue.length) {
      this.queue = queue.slice(this.head)
      this.head = 0
    }
    // Capped: a wall clock set back must not stretch the wait beyond one timeout.
    return Math.min(this.queue[this.head]!.at - now, this.timeoutMillis)
  }

  private start(): void {
    this.running = true
    const park = Effect.async<void>((resume) => {
      this.parked = () => resume(Effect.void)
      return Effect.sync(() => {
        this.parked = undefined
      })
    })
    const loop: Effect.Effect<void> = Effect.suspend(() => {
      const wait = this.expireDue()
      return Effect.zipRight(wait === undefined ? park : this.clock.sleep(Duration.millis(wait)), loop)
    })
    Effect.runFork(
      loop.pipe(
        Effect.ensuring(Effect.sync(() => {
          this.running = false
          this.parked = undefined
        })),
        Effect.interruptible
      ),
      { scope: this.scope }
    )
  }
}

/**
 * A wait on a backend's promise, in the caller's fiber, that gives up when the fiber's current deadline passes
 * (failing with `onError` of a `TimeoutException`); the promise is then ignored. Interrupting it stops waiting.
 */
export const deadlineLeaf = <A, E>(run: () => PromiseLike<A>, onError: (cause: unknown) => E): Effect.Effect<A, E> =>
  Effect.withFiberRuntime((fiber) => {
    const deadline = fiber.getFiberRef(currentDeadline)
    return Effect.async<A, E>((resume) => {
      let waiting = true
      const abort = () => {
        if (!waiting) return
        waiting = false
        resume(Effect.fail(onError(deadline!.timeout())))
      }
      const bounded = deadline !== undefined && !deadline.done
      if (bounded && !deadline.watch(abort)) return abort()
      let promise: PromiseLike<A>
      try {
        promise = run()
      } catch (cause) {
        waiting = false
        if (bounded) deadline.unwatch(abort)
        return resume(Effect.fail(onError(cause)))
      }
      promise.then(
        (value) => {
          if (!waiting) return
          waiting = false
          if (bounded) deadline.unwatch(abort)
          resume(Effect.succeed(value))
        },
        (cause) => {
          if (!waiting) return
          waiting = false
          if (bounded) deadline.unwatch(abort)
          resume(Effect.fail(onError(cause)))
        }
      )
      return Effect.sync(() => {
        waiting = false
        if (bounded) deadline.unwatch(abort)
      })
    })
  })

/**
 * `call` bounded by a deadline armed on `watchdog`. With `inFiber` false, `call` runs in the caller's fiber and
 * its `deadlineLeaf`s give up at the deadline; with `inFiber` true, it runs in a fiber of its own, interrupted
 * at the deadline (without waiting for it to end: the caller is told at once). The deadline is over when the
 * call is, however it ends.
 */
export const bounded = <A, E>(
  call: Effect.Effect<A, E>,
  watchdog: Watchdog,
  inFiber: boolean
): Effect.Effect<A, E | Cause.TimeoutException> =>
  Effect.withFiberRuntime((caller) => {
    const deadline = watchdog.arm()
    const over = () => {
      deadline.done = true
    }
    if (!inFiber) {
      // The deadline of an enclosing bounded call, if any, holds again afterwards.
      const enclosing = caller.getFiberRef(currentDeadline)
      return Effect.zipRight(
        FiberRef.set(currentDeadline, deadline),
        Effect.onExit(call, () => Effect.zipRight(Effect.sync(over), FiberRef.set(currentDeadline, enclosing)))
      )
    }
    return Effect.async<A, E | Cause.TimeoutException>((resume) => {
      const runtime = Runtime.make({
        context: caller.currentContext,
        fiberRefs: caller.getFiberRefs(),
        runtimeFlags: Runtime.defaultRuntimeFlags
      })
      const fiber = Runtime.runFork(runtime)(call)
      let waiting = true
      const abort = () => {
        if (!waiting) return
        waiting = false
        fiber.unsafeInterruptAsFork(caller.id())
        resume(Effect.fail(deadline.timeout()))
      }
      fiber.addObserver((exit) => {
        over()
        if (!waiting) return
        waiting = false
        deadline.unwatch(abort)
        resume(exit)
      })
      if (waiting && !deadline.watch(abort)) abort()
      return Effect.suspend(() => {
        waiting = false
        deadline.unwatch(abort)
        return Effect.asVoid(Fiber.interrupt(fiber))
      })
    }).pipe(Effect.onExit((exit) => (Exit.isFailure(exit) ? Effect.sync(over) : Effect.void)))
  })

/**
 * Marks a tier whose calls wait on their backend only through `deadlineLeaf`s: its value is the tier's own
 * methods, so that a wrapper replacing one of them (`{ ...tier, getMany: traced }`) is not taken for it.
 */
export const honoursDeadlines: unique symbol = Symbol.for("@rms/cache/honoursDeadlines")

/** The operations a marked tier vouches for. */
const operations = ["get", "getOption", "getMany", "set", "setMany", "invalidate", "invalidateAll", "size"] as const

/** The mark of a tier built with these operations. */
export const markOf = (cache: Record<(typeof operations)[number], unknown>): Readonly<Record<string, unknown>> =>
  Object.fromEntries(operations.map((name) => [name, cache[name]]))

/** Whether `cache` carries the mark, with every operation still its own. */
export const honours = (cache: object): boolean => {
  const mark = (cache as { readonly [honoursDeadlines]?: Readonly<Record<string, unknown>> })[honoursDeadlines]
  return mark !== undefined && operations.every((name) => mark[name] === (cache as Record<string, unknown>)[name])
}
