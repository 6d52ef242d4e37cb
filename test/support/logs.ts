/**
 * Everything the library could print, captured: every built-in Effect logger (string, logfmt, json,
 * structured, pretty in both modes) writing to a `Console` that records each call as Node's console would
 * print it.
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { format } from "node:util"

/** A `Console` whose every method records what Node's console would print; nothing reaches the terminal. */
const recordingConsole = (lines: Array<string>): Console.Console => {
  const record = (...args: ReadonlyArray<unknown>) => void lines.push(format(...args))
  const unsafe: Console.UnsafeConsole = {
    assert: (condition, ...args) => condition ? undefined : record(...args),
    clear: () => {},
    count: record,
    countReset: record,
    debug: record,
    dir: (item) => record(item),
    dirxml: record,
    error: record,
    group: record,
    groupCollapsed: record,
    groupEnd: () => {},
    info: record,
    log: record,
    table: (data) => record(data),
    time: record,
    timeEnd: record,
    timeLog: record,
    trace: record,
    warn: record
  }
  const sync = <A extends ReadonlyArray<unknown>>(f: (...args: A) => void) => (...args: A) => Effect.sync(() => f(...args))
  return {
    [Console.TypeId]: Console.TypeId,
    assert: sync(unsafe.assert),
    clear: Effect.void,
    count: sync(unsafe.count),
    countReset: sync(unsafe.countReset),
    debug: sync(unsafe.debug),
    dir: sync(unsafe.dir),
    dirxml: sync(unsafe.dirxml),
    error: sync(unsafe.error),
    group: () => Effect.void,
    groupEnd: Effect.void,
    info: sync(unsafe.info),
    log: sync(unsafe.log),
    table: sync(unsafe.table),
    time: () => Effect.void,
    timeEnd: () => Effect.void,
    timeLog: sync(unsafe.timeLog),
    trace: sync(unsafe.trace),
    warn: sync(unsafe.warn),
    unsafe
  }
}

/** The built-in loggers, each printing through the fiber's `Console`. */
const everyLogger: ReadonlyArray<Logger.Logger<unknown, void>> = [
  Logger.withConsoleLog(Logger.stringLogger),
  Logger.withConsoleLog(Logger.logfmtLogger),
  Logger.withConsoleLog(Logger.jsonLogger),
  Logger.withConsoleLog(Logger.structuredLogger),
  Logger.prettyLogger({ mode: "tty", colors: false }),
  Logger.prettyLogger({ mode: "browser", colors: false })
]

/**
 * A layer that sends every log through every built-in logger into `lines`, from the default level down to
 * `Debug`. Provide it where the library's services are built: background fibers log with what they were
 * given then.
 */
export const captureLogs = (lines: Array<string>): Layer.Layer<never> =>
  Layer.mergeAll(
    Logger.replace(Logger.defaultLogger, everyLogger[0]!),
    ...everyLogger.slice(1).map((logger) => Logger.add(logger)),
    Console.setConsole(recordingConsole(lines)),
    Logger.minimumLogLevel(LogLevel.All)
  )
