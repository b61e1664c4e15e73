import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RowCodec } from '../../src/digest/row-codec.ts'
import { LevelStore } from '../../src/stores/level-store.ts'
import { describeReplicaStoreCompliance } from './compliance.ts'

describeReplicaStoreCompliance('LevelDB', async schema => {
  const dir = await mkdtemp(join(tmpdir(), 'converge-level-compliance-'))
  const make = (): LevelStore => new LevelStore({ path: join(dir, 'store'), codec: new RowCodec(schema) })
  const store = make()
  await store.open()
  return { store, openAgain: make, cleanup: async () => { await store.close(); await rm(dir, { recursive: true, force: true }) } }
})
