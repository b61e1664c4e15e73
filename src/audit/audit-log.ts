/**
 * The append-only audit log: one sublevel of the agent's LevelDB, entries
 * keyed by sequence number, each carrying the SHA-256 of the previous entry
 * (a hash chain: editing or removing an entry breaks every later link).
 *
 * A fix writes an `intent` (what will change, with after-images) before it is
 * applied and a `commit` (with the before-images the store returned) after.
 */
import { createHash } from 'node:crypto'
import { pack, unpack } from 'msgpackr'
import { AuditChainError } from '../errors.ts'
import type { ByteSublevel, StateDb } from '../index/state-db.ts'
import { SerialQueue } from '../util/serial.ts'
import type { VectorClock } from './vector-clock.ts'

export type AuditKind = 'intent' | 'commit' | 'abort'

export interface AuditRecord {
  kind: AuditKind
  fixId: string
  correlationId: string
  dataset: string
  region: string
  clock: VectorClock
  /** The peer whose rows were taken as canonical. */
  sourceRegion?: string
  rule?: string
  detected?: { missing: number, changed: number, extra: number }
  /** Canonical rows written by the fix. */
  upserts?: Uint8Array[]
  /** Canonical keys deleted by the fix. */
  deletes?: Uint8Array[]
  /** Before-images, per upsert then per delete; null where the row was absent. */
  before?: Array<Uint8Array | null>
  storeSeq?: number
  reason?: string
  /** The partition value a fix of a partitioned dataset belongs to. */
  partition?: string
}

export interface AuditEntry extends AuditRecord {
  seq: number
  at: number
  prevHash: string
  hash: string
}

const GENESIS = '0'.repeat(64)

function seqKey (seq: number): Uint8Array {
  const out = new Uint8Array(8)
  new DataView(out.buffer).setBigUint64(0, BigInt(seq))
  return out
}

function hashOf (body: Omit<AuditEntry, 'hash'>): string {
  return createHash('sha256').update(pack(body)).digest('hex')
}

export class AuditLog {
  private readonly entries: ByteSublevel
  private readonly appends = new SerialQueue()
  private lastSeq = 0
  private lastHash = GENESIS

  constructor (state: StateDb) {
    this.entries = state.sublevel('audit')
  }

  async open (): Promise<void> {
    for await (const [, value] of this.entries.iterator({ reverse: true, limit: 1 })) {
      const last = unpack(value) as AuditEntry
      this.lastSeq = last.seq
      this.lastHash = last.hash
    }
  }

  async append (record: AuditRecord): Promise<AuditEntry> {
    return await this.appends.run(async () => {
      // undefined fields are left out so that the hashed bytes survive a round trip through storage
      const defined = Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined)) as unknown as AuditRecord
      const body = { ...defined, seq: this.lastSeq + 1, at: Date.now(), prevHash: this.lastHash }
      const entry: AuditEntry = { ...body, hash: hashOf(body) }
      await this.entries.put(seqKey(entry.seq), pack(entry))
      this.lastSeq = entry.seq
      this.lastHash = entry.hash
      return entry
    })
  }

  async * read (options: { since?: number, reverse?: boolean, limit?: number } = {}): AsyncGenerator<AuditEntry> {
    const range = options.since === undefined ? {} : { gt: seqKey(options.since) }
    for await (const [, value] of this.entries.iterator({ ...range, reverse: options.reverse ?? false, limit: options.limit ?? -1 })) {
      yield unpack(value) as AuditEntry
    }
  }

  /** Walks the whole chain; throws AuditChainError at the first entry that does not link or hash. */
  async verify (): Promise<number> {
    let prev = GENESIS
    let expectSeq = 1
    for await (const entry of this.read()) {
      if (entry.seq !== expectSeq) throw new AuditChainError(`audit entry ${expectSeq} is missing (found ${entry.seq})`)
      if (entry.prevHash !== prev) throw new AuditChainError(`audit entry ${entry.seq} does not link to entry ${entry.seq - 1}`)
      const { hash, ...body } = entry
      if (hashOf(body) !== hash) throw new AuditChainError(`audit entry ${entry.seq} was altered`)
      prev = hash
      expectSeq++
    }
    return expectSeq - 1
  }
}
