/**
 * One holder at a time per fix (per audit log): two callers applying the same
 * fix id, or rolling back the same fix, must not both find it undone and both
 * write it. Different fixes go on side by side.
 */
import type { AuditLog } from './audit-log.ts'

const held = new WeakMap<AuditLog, Map<string, Promise<unknown>>>()

export async function withFixLock<T> (audit: AuditLog, key: string, task: () => Promise<T>): Promise<T> {
  let locks = held.get(audit)
  if (locks === undefined) { locks = new Map(); held.set(audit, locks) }
  const previous = locks.get(key) ?? Promise.resolve()
  const run = previous.then(task, task)
  const tail = run.catch(() => undefined)
  locks.set(key, tail)
  try {
    return await run
  } finally {
    // the last holder leaves no entry behind
    if (locks.get(key) === tail) locks.delete(key)
  }
}
