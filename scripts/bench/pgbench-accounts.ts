/** pgbench's accounts table as the converge dataset that section 4 reconciles. */
import type { DatasetSchema } from '../../src/digest/schema.ts'

/** pgbench_accounts as a converge dataset (filler is character(84); bid, abalance and filler are nullable). */
export const PGBENCH_ACCOUNTS_SCHEMA: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'aid', type: 'integer' },
    { name: 'bid', type: 'integer' },
    { name: 'abalance', type: 'integer' },
    { name: 'filler', type: 'string' }
  ],
  primaryKey: ['aid'],
  ignoreColumns: []
}

export const TABLE = 'public.pgbench_accounts'
export const DATASET = 'accounts'
