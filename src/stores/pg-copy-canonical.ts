/**
 * COPY text lines straight to canonical rows, for the common columns: a
 * PostgreSQL int2/int4/int8 read as an `integer` column, and a column read
 * as its text (text, varchar, char, name, uuid) as a `string` column.
 *
 * Why: the general way (pg-copy.ts decoders, then RowCodec normalization and
 * packValues) makes a string per field, an array per row and runs a
 * general-purpose encoder twice per row (row and key); a full index build
 * spends a good share of its scan there. Here the line's bytes are copied
 * into the encoding as they are.
 *
 * The bytes are the same as the general way's by construction: an integer is
 * the value parseInt (int2, int4) or RowCodec's integer normalization (int8,
 * below 2^53) gives; a text field of ASCII bytes with no COPY escape is the
 * string the decoder would give, and its UTF-8 bytes are the line's bytes.
 * A line with anything else (NULL where a column may not be null, an escape,
 * a byte over 0x7f, a longer int8, a malformed line) returns undefined, and
 * the caller takes the general way, which decodes it or throws what is wrong.
 */
import { CanonicalWriter } from '../digest/canonical-writer.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import { BACKSLASH, INT2_OID, INT4_OID, INT8_OID, LETTER_N, MINUS, NEWLINE, TAB, ZERO } from './pg-copy.ts'
import type { StoredRow } from './replica-store.ts'

const INT_OIDS = new Set([INT2_OID, INT4_OID, INT8_OID])
/** Digits a value may have and still be below 2^53 whatever they are. */
const SAFE_DIGITS = 15

type Kind = 'integer' | 'text'

export interface CanonicalColumns {
  codec: RowCodec
  /** Per schema column: whether NULL is allowed (RowCodec.normalize's rule). */
  nullable: readonly boolean[]
  /** Per select-list column (schema order): its PostgreSQL type oid, and whether its type parser is the identity (read as its text). */
  oids: readonly number[]
  readAsText: readonly boolean[]
}

/** The direct encoder for these columns, or undefined when a column is not one it encodes (then every line goes the general way). */
export function canonicalLineEncoder (columns: CanonicalColumns): ((line: Buffer) => StoredRow | undefined) | undefined {
  const { codec, nullable } = columns
  const kinds: Kind[] = []
  for (let i = 0; i < codec.columns.length; i++) {
    const type = codec.columns[i]!.type
    if (type === 'integer' && INT_OIDS.has(columns.oids[i]!)) kinds.push('integer')
    else if (type === 'string' && columns.readAsText[i] === true) kinds.push('text')
    else return undefined
  }
  const n = kinds.length
  const keyPositions = codec.keyPositions
  const writer = new CanonicalWriter()
  const starts = new Array<number>(n).fill(0)
  const ends = new Array<number>(n).fill(0)

  return (line: Buffer): StoredRow | undefined => {
    const end = line.length - 1
    if (line[end] !== NEWLINE) return undefined
    // the row is at most the line plus a header per value and one for the array; the key at most as much again
    const start = writer.begin(2 * (line.length + 5 * (n + 1)))
    const out = writer.buffer
    writer.arrayHeader(n)
    let at = 0
    for (let c = 0; c < n; c++) {
      let stop = at
      let bits = 0
      let escaped = false
      while (stop < end) {
        const b = line[stop]!
        if (b === TAB) break
        bits |= b
        if (b === BACKSLASH) escaped = true
        stop++
      }
      if ((stop === end) !== (c === n - 1)) return writer.abandon(start)
      starts[c] = writer.offset
      if (stop - at === 2 && line[at] === BACKSLASH && line[at + 1] === LETTER_N) {
        if (!nullable[c]) return writer.abandon(start)
        writer.nil()
      } else if (kinds[c] === 'integer') {
        const value = digits(line, at, stop)
        if (value === undefined) return writer.abandon(start)
        writer.integer(value)
      } else {
        // an escape or a byte over 0x7f: the general way decodes it
        if ((bits & 0x80) !== 0 || escaped) return writer.abandon(start)
        writer.asciiString(line, at, stop)
      }
      ends[c] = writer.offset
      at = stop + 1
    }
    const rowEnd = writer.offset
    writer.arrayHeader(keyPositions.length)
    for (const p of keyPositions) writer.bytes(out, starts[p]!, ends[p]!)
    const keyEnd = writer.offset
    return { row: out.subarray(start, rowEnd), key: out.subarray(rowEnd, keyEnd) }
  }
}

/** A decimal integer of at most SAFE_DIGITS digits (an optional minus first), else undefined. */
function digits (line: Buffer, start: number, stop: number): number | undefined {
  let i = start
  const negative = line[i] === MINUS
  if (negative) i++
  if (i === stop || stop - i > SAFE_DIGITS) return undefined
  let value = 0
  for (; i < stop; i++) {
    const d = line[i]! - ZERO
    if (d < 0 || d > 9) return undefined
    value = value * 10 + d
  }
  // RowCodec normalizes -0 to 0
  return negative && value !== 0 ? -value : value
}
