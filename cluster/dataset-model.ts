/**
 * A scenario dataset: the sample orders of orders.ts, under the dataset's own
 * name, optionally split into partitions by a `shard` key column (so a whole
 * partition can be lost, and partitions are reconciled independently).
 *
 * Every row is a pure function of (order id, revision): the runner, the drift
 * injectors and the live load all know what a row should be without reading
 * it, and the end checks compare against that.
 *
 * Id ranges keep writers apart: [0, rows) seeded; LOAD_BASE + n inserted by
 * the live load; DRIFT_BASE + region × DRIFT_SPAN + n inserted by drift.
 */
import { RowCodec, type Row } from '../src/digest/row-codec.ts'
import type { DatasetSchema } from '../src/digest/schema.ts'
import { ORDERS_SCHEMA, orderRow } from './orders.ts'

export const LOAD_BASE = 1_000_000_000
export const DRIFT_BASE = 1_500_000_000
export const DRIFT_SPAN = 10_000_000

export class DatasetModel {
  readonly schema: DatasetSchema
  readonly codec: RowCodec

  constructor (readonly name: string, readonly rows: number, readonly partitions?: number) {
    this.schema = partitions === undefined
      ? ORDERS_SCHEMA
      : {
          ...ORDERS_SCHEMA,
          columns: [{ name: 'shard', type: 'integer' }, ...ORDERS_SCHEMA.columns],
          primaryKey: ['shard', 'order_id'],
          partitionColumn: 'shard'
        }
    this.codec = new RowCodec(this.schema)
  }

  shardOf (id: number): number { return this.partitions === undefined ? 0 : id % this.partitions }

  row (id: number, revision = 0): Row {
    const row = orderRow(id, revision)
    return this.partitions === undefined ? row : { shard: this.shardOf(id), ...row }
  }

  encodeRow (id: number, revision = 0): Uint8Array { return this.codec.encodeRow(this.row(id, revision)) }

  encodeKey (id: number): Uint8Array {
    return this.codec.encodeKey(this.partitions === undefined ? { order_id: id } : { shard: this.shardOf(id), order_id: id })
  }

  /** The order id of an encoded key. */
  idOfKey (key: Uint8Array): number { return Number(this.codec.decodeKey(key).order_id) }
}
