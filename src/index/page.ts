/**
 * Index pages: the entries under one tree node at the index's page level,
 * kept together in one LevelDB record.
 *
 * Why pages: a sync reads the index by tree leaf, and a 1 % drift of a
 * million rows touches some 9,000 of its 65,536 leaves. With one record per
 * row, each leaf is an iterator seek and a read on the threadpool, about a
 * second for those leaves on a quiet machine and several on a busy one. With
 * one record per leaf they are 9,000 point reads in one getMany call, some
 * 50 ms. A full pass over the index also reads 15-30 times fewer records.
 *
 * A page's key is its level (1 byte) and node index (4 bytes, big-endian),
 * so pages sort in key-hash order. Its value is its entries in key-hash
 * order (then key bytes, for the astronomically rare equal hashes), each
 *
 *     keyHash (8, big-endian) ‖ entry hash (8) ‖ key length (LEB128) ‖ key
 *
 * The entry hash, xxh64(keyHash ‖ rowDigest), is what the tree adds up and
 * what a sync compares; storing it spares a hash per listed row.
 */
import { MAX_TREE_DEPTH } from '../constants.ts'
import { IndexPageFormatError } from '../errors.ts'
import type { IndexEntry } from '../sync/replica-view.ts'
import { nodeOfHigh32 } from '../tree/merkle-tree.ts'
import { bytesToU64 } from '../digest/hash.ts'
import { high32, low32 } from '../util/u64.ts'

export const PAGE_KEY_BYTES = 5

/** The most bytes an entry's fixed part and key length take: 16, and 5 for a LEB128 32-bit length. */
export const ENTRY_HEAD_MAX = 21

export function pageKey (level: number, index: number): Uint8Array {
  const out = Buffer.allocUnsafe(PAGE_KEY_BYTES)
  out[0] = level
  out.writeUInt32BE(index >>> 0, 1)
  return out
}

/** The node index a page key names (pageKey's inverse, its level aside). */
export function pageIndexOf (key: Uint8Array): number {
  return ((key[1]! << 24) | (key[2]! << 16) | (key[3]! << 8) | key[4]!) >>> 0
}

/** The first and past-the-last page keys of a level, for a range over all of its pages. */
export function levelRange (level: number): { gte: Uint8Array, lt: Uint8Array } {
  const lt = Buffer.alloc(PAGE_KEY_BYTES)
  lt[0] = level + 1
  return { gte: pageKey(level, 0), lt }
}

if (MAX_TREE_DEPTH > 8) throw new Error('index pages address nodes by the high 32 bits of the key hash: MAX_TREE_DEPTH must be at most 8')

/** Writes a LEB128 unsigned integer; returns where it ends. */
export function putVarint (out: Uint8Array, at: number, value: number): number {
  while (value >= 0x80) { out[at++] = (value & 0x7f) | 0x80; value >>>= 7 }
  out[at++] = value
  return at
}

export function varintSize (value: number): number {
  let n = 1
  while (value >= 0x80) { value >>>= 7; n++ }
  return n
}

/** One entry of a page, by position: where it starts and ends, its key's bounds and its hash's high 32 bits. */
interface Cursor { at: number, end: number, keyAt: number, hi: number, lo: number }

/** Reads the entry at `at`; throws IndexPageFormatError when it runs past the page. */
function entryAt (page: Uint8Array, at: number, cursor: Cursor): Cursor {
  if (at + 17 > page.length) throw new IndexPageFormatError(`an entry at byte ${at} runs past the page's ${page.length} bytes`)
  let p = at + 16
  let length = 0
  let shift = 0
  for (;;) {
    if (p >= page.length || shift > 28) throw new IndexPageFormatError(`a key length at byte ${at + 16} does not end`)
    const b = page[p++]!
    length += (b & 0x7f) * 2 ** shift
    if (b < 0x80) break
    shift += 7
  }
  if (p + length > page.length) throw new IndexPageFormatError(`a key at byte ${p} runs past the page`)
  cursor.at = at
  cursor.keyAt = p
  cursor.end = p + length
  cursor.hi = ((page[at]! << 24) | (page[at + 1]! << 16) | (page[at + 2]! << 8) | page[at + 3]!) >>> 0
  cursor.lo = ((page[at + 4]! << 24) | (page[at + 5]! << 16) | (page[at + 6]! << 8) | page[at + 7]!) >>> 0
  return cursor
}

/** The 64-bit field at `at` (through a shared scratch buffer: no DataView per call). */
const readU64 = bytesToU64

/** A page's bytes as a plain Uint8Array (views of it are cheaper to make than a Buffer's) and a DataView for its 64-bit fields. */
function views (page: Uint8Array): { bytes: Uint8Array, fields: DataView } {
  return { bytes: new Uint8Array(page.buffer, page.byteOffset, page.byteLength), fields: new DataView(page.buffer, page.byteOffset, page.byteLength) }
}

/**
 * The entries of a page, in order; only those under node (level, index) when
 * given (a page above the node's level holds several nodes). Keys are views
 * of the page's bytes.
 */
export function decodePage (page: Uint8Array, into: IndexEntry[] = [], under?: { level: number, index: number }): IndexEntry[] {
  const { bytes, fields } = views(page)
  const c: Cursor = { at: 0, end: 0, keyAt: 0, hi: 0, lo: 0 }
  for (let at = 0; at < bytes.length; at = c.end) {
    entryAt(bytes, at, c)
    if (under !== undefined && nodeOfHigh32(c.hi, under.level) !== under.index) continue
    into.push({ keyHash: fields.getBigUint64(at), entry: fields.getBigUint64(at + 8), key: bytes.subarray(c.keyAt, c.end) })
  }
  return into
}

/** Calls `each` with the key hash's high 32 bits and the entry hash of every entry of a page (a full pass: no key is made). */
export function forEachEntry (page: Uint8Array, each: (hi: number, keyHash: bigint, entry: bigint) => void): number {
  const { bytes, fields } = views(page)
  const c: Cursor = { at: 0, end: 0, keyAt: 0, hi: 0, lo: 0 }
  let n = 0
  for (let at = 0; at < bytes.length; at = c.end) {
    entryAt(bytes, at, c)
    each(c.hi, fields.getBigUint64(at), fields.getBigUint64(at + 8))
    n++
  }
  return n
}

function compareKeys (page: Uint8Array, from: number, to: number, key: Uint8Array): number {
  const n = Math.min(to - from, key.length)
  for (let i = 0; i < n; i++) {
    const d = page[from + i]! - key[i]!
    if (d !== 0) return d
  }
  return (to - from) - key.length
}

/** Where `key` is in a page, or where it would go: the first entry not before it, and whether that entry is the key's. */
function seek (page: Uint8Array, keyHash: bigint, key: Uint8Array, c: Cursor): { at: number, found: boolean } {
  const hi = high32(keyHash)
  const lo = low32(keyHash)
  for (let at = 0; at < page.length; at = c.end) {
    entryAt(page, at, c)
    if (c.hi !== hi ? c.hi > hi : c.lo !== lo ? c.lo > lo : compareKeys(page, c.keyAt, c.end, key) >= 0) {
      return { at, found: c.hi === hi && c.lo === lo && compareKeys(page, c.keyAt, c.end, key) === 0 }
    }
  }
  return { at: page.length, found: false }
}

/** The entry hash a page holds for `key`, or undefined when it holds none. */
export function entryOf (page: Uint8Array, keyHash: bigint, key: Uint8Array): bigint | undefined {
  const c: Cursor = { at: 0, end: 0, keyAt: 0, hi: 0, lo: 0 }
  const { at, found } = seek(page, keyHash, key, c)
  return found ? readU64(page, at + 8) : undefined
}

/**
 * The page with the entry for `key` set to `entry` (or removed when
 * undefined), and the entry hash it held before. The page is left as it is
 * and a new one returned when anything changes.
 */
export function setEntry (page: Uint8Array, keyHash: bigint, key: Uint8Array, entry: bigint | undefined): { page: Uint8Array, before: bigint | undefined } {
  const c: Cursor = { at: 0, end: 0, keyAt: 0, hi: 0, lo: 0 }
  const { at, found } = seek(page, keyHash, key, c)
  const before = found ? readU64(page, at + 8) : undefined
  if (before === entry) return { page, before }
  const end = found ? c.end : at
  const record = entry === undefined ? undefined : encodeEntry(keyHash, entry, key)
  const out = new Uint8Array(at + (record?.length ?? 0) + (page.length - end))
  out.set(page.subarray(0, at), 0)
  if (record !== undefined) out.set(record, at)
  out.set(page.subarray(end), at + (record?.length ?? 0))
  return { page: out, before }
}

export function encodeEntry (keyHash: bigint, entry: bigint, key: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(16 + varintSize(key.length) + key.length)
  out.writeBigUInt64BE(keyHash, 0)
  out.writeBigUInt64BE(entry, 8)
  out.set(key, putVarint(out, 16, key.length))
  return out
}
