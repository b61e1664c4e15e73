import { RowCodec, type Row } from '../../src/digest/row-codec.ts'
import type { DatasetSchema } from '../../src/digest/schema.ts'

export const ordersSchema: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'customer', type: 'string' },
    { name: 'amount', type: 'float' },
    { name: 'status', type: 'string' },
    { name: 'updated_at', type: 'timestamp' }
  ],
  primaryKey: ['id'],
  ignoreColumns: [],
  eventTimeColumn: 'updated_at'
}

export const ordersCodec = new RowCodec(ordersSchema)

export function order (id: number, version = 0): Row {
  return { id, customer: `customer-${id % 997}`, amount: (id * 7919 % 100000) / 100 + version, status: version === 0 ? 'open' : `rev-${version}`, updated_at: new Date(1_700_000_000_000 + id * 1000 + version) }
}
