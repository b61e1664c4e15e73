/**
 * Views of one dataset under comparison schemas (src/digest/schema-compat.ts),
 * each a digest index over the store seen through that schema. A source of
 * truth builds one when a replica with a compatibly different schema asks for
 * it; a replica builds the same one to compare against it. Built once per
 * comparison schema and kept current by the store's change feed until stopped.
 */
import type { DatasetSchema } from '../digest/schema.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import { Projection } from '../digest/schema-compat.ts'
import { DigestIndex } from '../index/digest-index.ts'
import type { PagePool } from '../index/page-cache.ts'
import type { StateDb } from '../index/state-db.ts'
import type { Logger } from '../observability/logger.ts'
import { RepeatedFailure } from '../observability/repeated-failure.ts'
import { ProjectedStore } from '../stores/projected-store.ts'
import type { ReplicaStore } from '../stores/replica-store.ts'

export interface ShapeView {
  shape: DatasetSchema
  codec: RowCodec
  store: ReplicaStore
  index: DigestIndex
}

export interface ShapeViewsInit {
  dataset: string
  /** The dataset's own schema, as its store holds rows. */
  schema: DatasetSchema
  store: ReplicaStore
  state: StateDb
  /** The agent's page pool: each view's index takes a share. */
  pages: PagePool
  log: Logger
  /** Called when a view's index changes (a replica re-evaluates its drift). */
  onChange?: () => void
}

export class ShapeViews {
  private readonly views = new Map<string, Promise<ShapeView>>()

  constructor (private readonly init: ShapeViewsInit) {}

  /** The view under `shape`, built on first use; `renames` maps this side's column names to the shape's. */
  async view (shape: DatasetSchema, renames: Record<string, string> = {}, signal?: AbortSignal): Promise<ShapeView> {
    const projection = new Projection(this.init.schema, shape, renames)
    const fp = projection.codec.fingerprint
    let view = this.views.get(fp)
    if (view === undefined) {
      view = this.build(projection, signal)
      this.views.set(fp, view)
      // a failed build is forgotten, so the next request tries again
      view.catch(() => { if (this.views.get(fp) === view) this.views.delete(fp) })
    }
    return await view
  }

  get size (): number { return this.views.size }

  async stop (): Promise<void> {
    const views = [...this.views.values()]
    this.views.clear()
    for (const v of views) await (await v.catch(() => undefined))?.index.stop()
  }

  private async build (projection: Projection, signal?: AbortSignal): Promise<ShapeView> {
    const { dataset, state, log } = this.init
    const store = new ProjectedStore(this.init.store, projection)
    const index = new DigestIndex({ dataset: `${dataset}@${projection.codec.fingerprint}`, codec: projection.codec, store, state, pageCache: this.init.pages.cache() })
    const failures = new RepeatedFailure({ log, fields: { dataset, shape: projection.codec.fingerprint }, message: 'comparison view stopped following; following again after a pause', recoveredMessage: 'comparison view following again' })
    index.on('error', err => { failures.failed(err) })
    index.on('following', () => { failures.recovered() })
    if (this.init.onChange !== undefined) index.on('change', this.init.onChange)
    const t0 = Date.now()
    await index.start({ signal })
    log.info({ dataset, shape: projection.codec.fingerprint, rows: index.tree.rowCount, ms: Date.now() - t0 }, 'comparison view ready')
    return { shape: projection.shape, codec: projection.codec, store, index }
  }
}
