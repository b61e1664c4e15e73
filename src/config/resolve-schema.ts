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
  for (const name of [...schema.ignoreColumns, ...(schema.eventTimeColumn === undefined ? [] : [schema.eventTimeColumn])]) {
    if (!columns.has(name)) throw new ConfigError(`dataset "${dataset.name}": column "${name}" is not in table ${dataset.store.table}`)
  }
  return { ...read, version: schema.version, ignoreColumns: schema.ignoreColumns, eventTimeColumn: schema.eventTimeColumn }
}
