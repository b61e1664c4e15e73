/**
 * A replica store seen through a comparison schema P (src/digest/schema-compat.ts):
 * rows come out projected to P, rows written in P are embedded back into the
 * store's own schema, keeping the values of columns P lacks. A digest index
 * over this view compares rows on the columns both schemas share, so two
 * peers whose schemas differ compatibly still converge on those columns.
 *
 * It owns nothing: the underlying store is opened, closed and trimmed by its
 * own index. Not key-hash ordered (the projection changes digests, not
 * places), so an index over it keeps its own entries.
 */
import type { Projection } from '../digest/schema-compat.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import { sameBytes } from '../util/bytes.ts'
import type { ApplyRequest, ApplyResult, ChangeBatch, ChangesOptions, ReplicaStore, StoreCapabilities, StoredRow } from './replica-store.ts'

export class ProjectedStore implements ReplicaStore {
  readonly kind: string
  readonly codec: RowCodec
  readonly supports: StoreCapabilities

  constructor (private readonly base: ReplicaStore, private readonly projection: Projection) {
    this.kind = `${base.kind} as ${projection.codec.fingerprint}`
    this.codec = projection.codec
    this.supports = { changeFeed: base.supports.changeFeed, durableChangeFeed: base.supports.durableChangeFeed, transactions: base.supports.transactions, feedRowsAtDelivery: base.supports.feedRowsAtDelivery }
  }

  /** Another view of the same data: an index built over one shape is not reused for another. */
  get id (): string { return `${this.base.id}@${this.codec.fingerprint}` }

  async open (): Promise<void> {}
  async close (): Promise<void> {}

  async * scan (options: { signal?: AbortSignal, batchSize?: number } = {}): AsyncGenerator<StoredRow[]> {
    for await (const batch of this.base.scan(options)) yield batch.map(r => ({ key: r.key, row: this.projection.project(r.row) }))
  }

  async get (keys: Uint8Array[], options: { signal?: AbortSignal } = {}): Promise<Array<Uint8Array | undefined>> {
    return (await this.base.get(keys, options)).map(r => (r === undefined ? undefined : this.projection.project(r)))
  }

  /** Writes rows given in P: each is embedded into the store's schema over the row it replaces. */
  async apply (request: ApplyRequest, options: { signal?: AbortSignal } = {}): Promise<ApplyResult> {
    const keys = request.upserts.map(r => this.codec.keyOfEncodedRow(r))
    const current = request.upserts.length === 0 ? [] : await this.base.get(keys, options)
    const upserts = request.upserts.map((row, i) => this.projection.embed(row, current[i]))
    // (what the caller expects there is in P, not in the store's schema: the store reads its rows itself)
    const { expected: _inP, ...asStored } = request
    const result = await this.base.apply({ ...asStored, upserts }, options)
    // a row the store changed as it was written, seen through P: changed only if a column P has changed
    const rewritten = (result.rewritten ?? []).map(r => ({ index: r.index, row: this.projection.project(r.row) })).filter(r => !sameBytes(r.row, request.upserts[r.index]!))
    return { seq: result.seq, before: result.before.map(r => (r === null ? null : this.projection.project(r))), ...(rewritten.length === 0 ? {} : { rewritten }) }
  }

  async lastSeq (): Promise<number> { return await this.base.lastSeq() }

  async * changes (options: ChangesOptions): AsyncGenerator<ChangeBatch> {
    for await (const batch of this.base.changes(options)) {
      yield {
        ...batch,
        changes: batch.changes.map(c => ({
          key: c.key,
          row: c.row === null ? null : this.projection.project(c.row),
          ...(c.before === undefined ? {} : { before: c.before === null ? null : this.projection.project(c.before) })
        }))
      }
    }
  }

  /** The store's own index decides what history it keeps; a view that falls behind rescans. */
  async trimChanges (): Promise<void> {}

  async countRows (options: { signal?: AbortSignal } = {}): Promise<number> { return await this.base.countRows(options) }
}
