import { ConfigError } from '../errors.ts'
import type { DatasetSchema } from '../digest/schema.ts'
import type { DatasetConfig } from './schema.ts'

/** The dataset's schema as written in the config, or read from its PostgreSQL table's catalog. */
export async function resolveSchema (dataset: DatasetConfig): Promise<DatasetSchema> {
  const schema = dataset.schema
  if (!('fromCatalog' in schema)) return schema
  if (dataset.store.kind !== 'postgres') throw new ConfigError(`dataset "${dataset.name}": a schema can be read from the catalog of a postgres store only`)
  const { readCatalogSchema } = await import('../stores/pg-store.ts')
  const read = await readCatalogSchema(dataset.store.connectionString, dataset.store.table)
  const columns = new Set(read.columns.map(c => c.name))
  const named = [...schema.ignoreColumns, schema.eventTimeColumn, schema.partitionColumn].filter(n => n !== undefined)
  for (const name of named) {
    if (!columns.has(name)) throw new ConfigError(`dataset "${dataset.name}": column "${name}" is not in table ${dataset.store.table}`)
  }
  if (schema.partitionColumn !== undefined && !read.primaryKey.includes(schema.partitionColumn)) {
    throw new ConfigError(`dataset "${dataset.name}": partition column "${schema.partitionColumn}" is not in the primary key of ${dataset.store.table} (${read.primaryKey.join(', ')})`)
  }
  return { ...read, version: schema.version, ignoreColumns: schema.ignoreColumns, eventTimeColumn: schema.eventTimeColumn, partitionColumn: schema.partitionColumn }
}
