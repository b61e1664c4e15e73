/** Node's notice that node:sqlite is experimental (Node 22): printed by every process that opens a SQLite store, and nothing the operator can act on. */
const SQLITE_NOTICE = /^SQLite is an experimental feature/
let noticeQuieted = false

/** Drops that one notice; every other warning is printed as Node prints it. */
export function quietSqliteNotice (): void {
  if (noticeQuieted) return
  noticeQuieted = true
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    if (SQLITE_NOTICE.test(typeof warning === 'string' ? warning : warning.message)) return
    emit(warning, ...rest)
  }) as typeof process.emitWarning
}
