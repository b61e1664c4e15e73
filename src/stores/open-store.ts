/**
 * Opens a replica store from its config, loading each driver only when it is
 * used (node:sqlite warns on load that it is experimental), and from a short
 * spec on the command line:
 *
 *   level:/var/lib/converge/orders
 *   sqlite:/srv/shop.db#orders
 *   postgres://converge@db:5432/shop#public.orders
 */
import { ConfigError } from '../errors.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import { LevelStore } from './level-store.ts'
import type { ReplicaStore } from './replica-store.ts'

export type StoreConfig =
  | { kind: 'level', path: string }
  | { kind: 'postgres', connectionString: string, table: string }
  | { kind: 'sqlite', path: string, table: string, createTable?: boolean }

export async function createStore (config: StoreConfig, codec: RowCodec): Promise<ReplicaStore> {
  switch (config.kind) {
    case 'level': return new LevelStore({ path: config.path, codec })
    case 'postgres': return new (await import('./pg-store.ts')).PgStore({ connectionString: config.connectionString, table: config.table, codec })
    case 'sqlite': return new (await import('./sqlite-store.ts')).SqliteStore({ path: config.path, table: config.table, codec, createTable: config.createTable ?? false })
  }
}

export function parseStoreSpec (spec: string): StoreConfig {
  const hash = spec.lastIndexOf('#')
  const table = hash < 0 ? undefined : spec.slice(hash + 1)
  const base = hash < 0 ? spec : spec.slice(0, hash)
  if (base.startsWith('level:')) return { kind: 'level', path: base.slice('level:'.length) }
  if (base.startsWith('sqlite:')) {
    if (table === undefined || table === '') throw new ConfigError(`store "${spec}": name the table after #, e.g. sqlite:/srv/shop.db#orders`)
    return { kind: 'sqlite', path: base.slice('sqlite:'.length), table }
  }
  if (/^postgres(ql)?:\/\//.test(base)) {
    if (table === undefined || table === '') throw new ConfigError(`store "${spec}": name the table after #, e.g. postgres://host/db#public.orders`)
    return { kind: 'postgres', connectionString: base, table }
  }
  throw new ConfigError(`store "${spec}" is not level:PATH, sqlite:PATH#TABLE or postgres://…#TABLE`)
}
