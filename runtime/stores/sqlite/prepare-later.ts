import type Database from 'better-sqlite3'

/** What a store does with a statement it prepares later. */
export interface LaterStatement<P extends unknown[], R> {
  run(...params: P): Database.RunResult
  get(...params: P): R | undefined
  all(...params: P): R[]
}

/**
 * A statement prepared the first time it runs, not when its store is made: a device's start
 * prepares only what it runs before it is ready (20-50 µs a statement; a queue store has dozens,
 * most of them for failures, cancelling, purging and metrics). `setup` sets its modes (`pluck`,
 * `raw`) once it exists. A statement that cannot be prepared throws where it runs, as running it would.
 */
export function prepareLater<P extends unknown[] = unknown[], R = unknown>(
  db: Database.Database,
  sql: string,
  setup: (s: Database.Statement<P, R>) => Database.Statement<P, R> = (s) => s,
): LaterStatement<P, R> {
  let made: Database.Statement<P, R> | undefined
  const statement = (): Database.Statement<P, R> => (made ??= setup(db.prepare(sql) as unknown as Database.Statement<P, R>))
  return {
    run: (...params) => statement().run(...params),
    get: (...params) => statement().get(...params),
    all: (...params) => statement().all(...params),
  }
}
