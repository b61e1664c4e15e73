/**
 * A derived index over the audit log, so that looking up one fix, the fixes
 * still in flight, or the rollback of a fix does not read the whole log (it
 * grows for ever, and entries carry up to 50,000 rows each).
 *
 * It lives in its own sublevel and is written in the same LevelDB batch as
 * the entry it indexes, so it never disagrees with the log. It is not part of
 * the hash chain: it can always be rebuilt from the entries, and a log written
 * before the index existed is indexed on first use (see AuditLog).
 *
 *   'f' ‖ fixId ‖ 0x00 ‖ seq   every entry of a fix, in seq order
 *   'o' ‖ fixId  → seq          a fix whose latest intent has no commit or abort yet
 *   'r' ‖ fixId ‖ 0x00 ‖ seq   the commit (at seq) of a rollback of fixId
 *   'm'          → seq          every entry up to seq is indexed
 */
import type { AbstractBatchOperation } from 'abstract-level'
import type { ByteSublevel, StateDb } from '../index/state-db.ts'
import type { AuditEntry } from './audit-log.ts'

const FIX = 0x66
const OPEN = 0x6f
const ROLLED_BACK = 0x72
const MARK = new Uint8Array([0x6d])
/** LevelDB keeps empty values, but a byte avoids any doubt across encodings. */
const PRESENT = new Uint8Array([1])

const utf8 = new TextEncoder()

/** A write to the root database aimed at a sublevel, so the entry and its index go in one batch. */
export type IndexOp = AbstractBatchOperation<StateDb['db'], Uint8Array, Uint8Array>

export function seqBytes (seq: number): Uint8Array {
  const out = new Uint8Array(8)
  new DataView(out.buffer).setBigUint64(0, BigInt(seq))
  return out
}

export function seqOf (bytes: Uint8Array, at = 0): number {
  return Number(new DataView(bytes.buffer, bytes.byteOffset + at, 8).getBigUint64(0))
}

function concat (...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

function tagged (tag: number, fixId: string): Uint8Array {
  return concat(new Uint8Array([tag]), utf8.encode(fixId))
}

export class FixIndex {
  constructor (private readonly sub: ByteSublevel) {}

  /** The index writes for one entry, to go into the batch that writes the entry. */
  opsFor (entry: AuditEntry): IndexOp[] {
    const seq = seqBytes(entry.seq)
    const ops: IndexOp[] = [{ type: 'put', sublevel: this.sub, key: concat(tagged(FIX, entry.fixId), new Uint8Array([0]), seq), value: PRESENT }]
    if (entry.kind === 'intent') ops.push({ type: 'put', sublevel: this.sub, key: tagged(OPEN, entry.fixId), value: seq })
    if (entry.kind === 'commit' || entry.kind === 'abort') ops.push({ type: 'del', sublevel: this.sub, key: tagged(OPEN, entry.fixId) })
    if (entry.kind === 'commit' && entry.rollbackOf !== undefined) {
      ops.push({ type: 'put', sublevel: this.sub, key: concat(tagged(ROLLED_BACK, entry.rollbackOf), new Uint8Array([0]), seq), value: PRESENT })
    }
    return ops
  }

  markOp (seq: number): IndexOp {
    return { type: 'put', sublevel: this.sub, key: MARK, value: seqBytes(seq) }
  }

  /** The seq every entry up to which is indexed (0 when nothing is). */
  async indexedThrough (): Promise<number> {
    const mark = await this.sub.get(MARK)
    return mark === undefined ? 0 : seqOf(mark)
  }

  /** Seqs of every entry of the fix, ascending. */
  async entriesOf (fixId: string): Promise<number[]> {
    return await this.seqsUnder(tagged(FIX, fixId))
  }

  /** Seqs of the commits of rollbacks of the fix, ascending. */
  async rollbacksOf (fixId: string): Promise<number[]> {
    return await this.seqsUnder(tagged(ROLLED_BACK, fixId))
  }

  /** Seqs of the intents of every fix still in flight, ascending. */
  async openIntents (): Promise<number[]> {
    const out: number[] = []
    for await (const value of this.sub.values({ gt: new Uint8Array([OPEN]), lt: new Uint8Array([OPEN + 1]) })) out.push(seqOf(value))
    return out.sort((a, b) => a - b)
  }

  /** Keys are prefix ‖ 0x00 ‖ seq(8); the length check leaves out a longer fix id that merely starts with this one and a NUL. */
  private async seqsUnder (prefix: Uint8Array): Promise<number[]> {
    const out: number[] = []
    const length = prefix.length + 1 + 8
    for await (const key of this.sub.keys({ gte: concat(prefix, new Uint8Array([0])), lt: concat(prefix, new Uint8Array([1])) })) {
      if (key.length === length) out.push(seqOf(key, prefix.length + 1))
    }
    return out
  }
}
