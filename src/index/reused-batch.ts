/**
 * A LevelDB write batch written, cleared and filled again: for bulk loads
 * that write hundreds of megabytes in batches of a few, and for the index's
 * page writes of a few megabytes after every repair.
 *
 * Why: classic-level frees a chained batch's native buffer only when the
 * collector finalizes the batch's JS handle (its `_close` is a no-op), and
 * V8 does not count that buffer, so nothing prompts the collection. A
 * rebuild that took a new batch for every 4 MB of pages left the buffers of
 * all the batches since the last full collection resident: the
 * 10,000,000-row build of an index keeping its own entries peaked at some
 * 440 MiB, against some 230 MiB with one batch used again (bench section 6).
 * A batch cleared after each write keeps its buffer's capacity and needs no
 * collection at all.
 *
 * abstract-level's public `write()` closes a batch for good, so the batch is
 * driven through its implementation methods (`_put`, `_del`, `_write`,
 * `_clear`). That is taken only where it is safe: a batch whose class
 * implements all four itself (classic-level's does; abstract-level's
 * defaults do nothing, and a write through them would be lost), on a
 * database with no prewrite hooks and no 'write' listeners (which the
 * public path would run), and the database's status is checked before each
 * write, as `write()` would. Anywhere else it falls back to a fresh public
 * batch per write.
 */
import type { Level } from 'level'
import { StoreNotOpenError } from '../errors.ts'

type Db = Level<Uint8Array, Uint8Array>
type PublicBatch = ReturnType<Db['batch']>

/** The implementation methods of a chained batch (abstract-level's private API, classic-level's native calls). */
interface ChainedBatchImpl {
  _put: (key: Uint8Array, value: Uint8Array) => void
  _del: (key: Uint8Array) => void
  _write: (options: object) => Promise<void>
  _clear: () => void
}

const IMPLEMENTED = ['_put', '_del', '_write', '_clear'] as const

/** Whether `batch`'s own class implements those methods, rather than inheriting abstract-level's defaults. */
function implementsReuse (batch: PublicBatch): boolean {
  const proto = Object.getPrototypeOf(batch) as object
  return IMPLEMENTED.every(name => Object.prototype.hasOwnProperty.call(proto, name))
}

function writeHooked (db: Db): boolean {
  const prewrite = (db as unknown as { hooks?: { prewrite?: { noop?: boolean } } }).hooks?.prewrite
  return (prewrite !== undefined && prewrite.noop !== true) || db.listenerCount('write') > 0
}

export class ReusedBatch {
  private batch: PublicBatch
  private readonly reused: boolean
  private bytes = 0
  private puts = 0

  constructor (private readonly db: Db) {
    this.batch = db.batch()
    this.reused = implementsReuse(this.batch) && !writeHooked(db)
  }

  /** Whether writes go through one batch used again (false: a public batch per write). */
  get reusing (): boolean { return this.reused }

  /** Bytes of keys and values put since the last write. */
  get size (): number { return this.bytes }

  /** Puts a record; the bytes are copied at once, so the caller may fill its buffers again. */
  put (key: Uint8Array, value: Uint8Array): void {
    if (this.reused) (this.batch as unknown as ChainedBatchImpl)._put(key, value)
    // the public batch may hold on to its key and value until its write
    else this.batch.put(key.slice(), value.slice())
    this.bytes += key.length + value.length
    this.puts++
  }

  /** Deletes a record; the key is copied at once. */
  del (key: Uint8Array): void {
    if (this.reused) (this.batch as unknown as ChainedBatchImpl)._del(key)
    else this.batch.del(key.slice())
    this.bytes += key.length
    this.puts++
  }

  /** Writes what was put and empties the batch for the next puts, written or not (a failed write is not tried again); one write at a time. */
  async write (): Promise<void> {
    if (this.puts === 0) return
    try {
      if (this.reused) {
        const impl = this.batch as unknown as ChainedBatchImpl
        try {
          // the checks write() makes: a write on a closed database would reach a freed native handle
          if (this.db.status !== 'open') throw new StoreNotOpenError('the state database')
          await impl._write({})
        } finally {
          impl._clear()
        }
      } else {
        const written = this.batch
        this.batch = this.db.batch()
        await written.write()
      }
    } finally {
      this.emptied()
    }
  }

  /** Drops what was put since the last write (work that failed before its write), so the next write does not carry it. */
  async discard (): Promise<void> {
    if (this.reused) {
      (this.batch as unknown as ChainedBatchImpl)._clear()
    } else {
      const dropped = this.batch
      this.batch = this.db.batch()
      await dropped.close()
    }
    this.emptied()
  }

  private emptied (): void {
    this.bytes = 0
    this.puts = 0
  }

  /** Lets the batch go, unwritten puts and all. */
  async close (): Promise<void> {
    await this.batch.close()
  }
}
