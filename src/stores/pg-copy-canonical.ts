/**
 * COPY text lines straight to canonical rows, for the common columns: a
 * PostgreSQL int2/int4/int8 read as an `integer` column, a column read as its
 * text (text, varchar, char, name, uuid) as a `string` column, a `json` as a
 * `json` column that keeps its text, a numeric as a `decimal` column, and a
 * timestamptz, timestamp or date as a `timestamp` column.
 *
 * Why: the general way (pg-copy.ts decoders, then RowCodec normalization and
 * packValues) makes a string per field, an array per row and runs a
 * general-purpose encoder twice per row (row and key); a full index build
 * spends a good share of its scan there, and a read of thousands of rows by
 * key most of its time.
 *
 * The bytes are the same as the general way's by construction: an integer is
 * the value parseInt (int2, int4) or RowCodec's integer normalization (int8,
 * below 2^53) gives; a text field of ASCII bytes with no COPY escape is the
 * string the decoder would give, and its UTF-8 bytes are the line's bytes (for
 * a json column kept as text, the text RowCodec keeps as it is); a
 * numeric's text without leading zeros is RowCodec's canonical decimal once
 * trailing fraction zeros (and a lone minus on zero) are cut; a timestamp of
 * a year from 1000 to 9999 in ISO style is the milliseconds the store's
 * parsers give (timestamptz: postgres-date's arithmetic, fraction included;
 * timestamp: Date's ISO parse, which keeps three fraction digits; date: UTC
 * midnight, RowCodec's reading of a zoneless date), or for a column of
 * `precision: us` the microseconds timestamp.ts reads from the same text.
 * A line with anything else (NULL where a column may not be null, an escape,
 * a byte over 0x7f, a longer int8, NaN, a year outside that range or BC,
 * another date style, a malformed line) returns undefined, and the caller
 * takes the general way, which decodes it or throws what is wrong.
 */
import { CanonicalWriter } from '../digest/canonical-writer.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import { BACKSLASH, DATE_OID, INT2_OID, INT4_OID, INT8_OID, JSON_OID, LETTER_N, MINUS, NEWLINE, NUMERIC_OID, TAB, TIMESTAMP_OID, TIMESTAMPTZ_OID, ZERO } from './pg-copy.ts'
import type { StoredRow } from './replica-store.ts'

const INT_OIDS = new Set([INT2_OID, INT4_OID, INT8_OID])
/** Digits a value may have and still be below 2^53 whatever they are. */
const SAFE_DIGITS = 15

type Kind = 'integer' | 'text' | 'decimal' | 'timestamptz' | 'timestamp' | 'date'

const TIME_KINDS: ReadonlyMap<number, Kind> = new Map<number, Kind>([[TIMESTAMPTZ_OID, 'timestamptz'], [TIMESTAMP_OID, 'timestamp'], [DATE_OID, 'date']])
const PLUS = 0x2b
const DOT = 0x2e
const COLON = 0x3a
const SPACE = 0x20

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
    const oid = columns.oids[i]!
    if (type === 'integer' && INT_OIDS.has(oid)) kinds.push('integer')
    else if (type === 'string' && columns.readAsText[i] === true) kinds.push('text')
    // a json column that keeps its text: its value is the text PostgreSQL prints, which json's input already checked is JSON
    else if (type === 'json' && codec.columns[i]!.keepText === true && oid === JSON_OID) kinds.push('text')
    // numeric's parser is the identity (pg leaves it text), so RowCodec reads its text as the decimal
    else if (type === 'decimal' && oid === NUMERIC_OID && columns.readAsText[i] === true) kinds.push('decimal')
    else if (type === 'timestamp' && TIME_KINDS.has(oid)) kinds.push(TIME_KINDS.get(oid)!)
    else return undefined
  }
  const n = kinds.length
  // a column of `precision: us` is read to the microsecond
  const micros = codec.columns.map(c => c.precision === 'us')
  // a decimal column of `keepScale` keeps numeric's trailing fraction zeros
  const keepScale = codec.columns.map(c => c.keepScale === true)
  const keyPositions = codec.keyPositions
  const writer = new CanonicalWriter()
  const starts = new Array<number>(n).fill(0)
  const ends = new Array<number>(n).fill(0)
  const span = [0, 0]

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
      } else if (kinds[c] === 'text') {
        // an escape or a byte over 0x7f: the general way decodes it
        if ((bits & 0x80) !== 0 || escaped) return writer.abandon(start)
        writer.asciiString(line, at, stop)
      } else if (kinds[c] === 'decimal') {
        if (!decimalSpan(line, at, stop, span, keepScale[c] === true)) return writer.abandon(start)
        writer.asciiString(line, span[0]!, span[1]!)
      } else {
        const time = micros[c] === true ? timeMicros(kinds[c]!, line, at, stop) : timeMs(kinds[c]!, line, at, stop)
        if (time === undefined) return writer.abandon(start)
        writer.integer(time)
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

/**
 * Where in `line[start, stop)` a numeric's canonical decimal lies, into
 * `span`: numeric's output (`-`, digits, a fraction) without its trailing
 * fraction zeros, without the point when no fraction is left, and without the
 * minus when the value is zero, which is RowCodec's canonical decimal when the
 * integer part has no leading zeros (numeric never prints any); with
 * `keepScale`, the fraction's zeros stay (decimal.ts). False for anything
 * else (NaN, Infinity, another shape): the general way reads it.
 */
function decimalSpan (line: Buffer, start: number, stop: number, span: number[], keepScale: boolean): boolean {
  let i = start
  const negative = line[i] === MINUS
  if (negative) i++
  const intStart = i
  while (i < stop && isDigit(line[i]!)) i++
  const intEnd = i
  if (intEnd === intStart || (line[intStart] === ZERO && intEnd - intStart > 1)) return false
  let end = intEnd
  const fraction = i < stop
  if (fraction) {
    if (line[i] !== DOT) return false
    const fractionStart = ++i
    while (i < stop && isDigit(line[i]!)) i++
    if (i !== stop || i === fractionStart) return false
    end = stop
    while (end > fractionStart && line[end - 1] === ZERO) end--
    if (end === fractionStart) end = intEnd
  }
  // zero: every digit is (with keepScale, its zeros are kept, its minus is not)
  const zero = intEnd - intStart === 1 && line[intStart] === ZERO && end === intEnd
  if (keepScale && fraction) end = stop
  span[0] = negative && !zero ? start : intStart
  span[1] = end
  return true
}

/** A timestamp field read apart: its whole seconds as UTC ms (the zone's offset taken off), and its fraction's digits. */
interface TimeParts { wholeMs: number, fraction: number, fractionDigits: number }

/**
 * Reads a timestamp's ISO-style text into `parts`, as the store's parser
 * reads it, for years 1000 to 9999 (four digits, so the two-digit-year rules
 * of Date.UTC never apply):
 *   timestamptz  `YYYY-MM-DD HH:MM:SS[.f…][±HH[:MM[:SS]]]`
 *   timestamp    `YYYY-MM-DD HH:MM:SS[.f…]`, read as UTC
 *   date         `YYYY-MM-DD`, UTC midnight
 * False for anything else (at most six fraction digits, as PostgreSQL writes).
 */
function readTime (kind: Kind, line: Buffer, start: number, stop: number, parts: TimeParts): boolean {
  if (stop - start < 10) return false
  const year = fixedDigits(line, start, 4)
  if (year < 1000 || line[start + 4] !== MINUS || line[start + 7] !== MINUS) return false
  const month = fixedDigits(line, start + 5, 2)
  const day = fixedDigits(line, start + 8, 2)
  if (month < 1 || month > 12 || day < 1 || day > 31) return false
  parts.fraction = 0
  parts.fractionDigits = 0
  if (kind === 'date') {
    parts.wholeMs = Date.UTC(year, month - 1, day)
    return stop === start + 10
  }
  if (stop < start + 19 || line[start + 10] !== SPACE || line[start + 13] !== COLON || line[start + 16] !== COLON) return false
  const hour = fixedDigits(line, start + 11, 2)
  const minute = fixedDigits(line, start + 14, 2)
  const second = fixedDigits(line, start + 17, 2)
  if (hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59) return false
  let i = start + 19
  if (i < stop && line[i] === DOT) {
    i++
    for (; i < stop && isDigit(line[i]!); i++, parts.fractionDigits++) {
      if (parts.fractionDigits === 6) return false
      parts.fraction = parts.fraction * 10 + line[i]! - ZERO
    }
    if (parts.fractionDigits === 0) return false
  }
  const offset = kind === 'timestamp' ? (i === stop ? 0 : undefined) : zoneOffsetMs(line, i, stop)
  if (offset === undefined) return false
  parts.wholeMs = Date.UTC(year, month - 1, day, hour, minute, second) - offset
  return true
}

const parts: TimeParts = { wholeMs: 0, fraction: 0, fractionDigits: 0 }

/**
 * A timestamp's UTC milliseconds from its text (readTime), as the store's
 * parsers and RowCodec give them: timestamptz by postgres-date's arithmetic
 * (Date.UTC with the fraction times 1000, cut to an integer by Date.UTC, less
 * the zone's offset); timestamp by Date's ISO parse, which keeps the first
 * three fraction digits; date as UTC midnight. Undefined for anything else.
 */
function timeMs (kind: Kind, line: Buffer, start: number, stop: number): number | undefined {
  if (!readTime(kind, line, start, stop, parts)) return undefined
  const { wholeMs, fraction, fractionDigits: k } = parts
  if (kind === 'timestamp') return wholeMs + (k <= 3 ? fraction * 10 ** (3 - k) : Math.trunc(fraction / 10 ** (k - 3)))
  // timestamptz: postgres-date computes 1000 * parseFloat('.f…'); n / 10^k is that same correctly rounded double
  return k === 0 ? wholeMs : wholeMs + Math.trunc(1000 * (fraction / 10 ** k))
}

/**
 * A timestamp's canonical microseconds (timestamp.ts) from its text
 * (readTime), every fraction digit kept; undefined for anything else and
 * beyond 2^53 microseconds (the general way makes that a bigint).
 */
function timeMicros (kind: Kind, line: Buffer, start: number, stop: number): number | undefined {
  if (!readTime(kind, line, start, stop, parts)) return undefined
  const us = parts.wholeMs * 1000 + parts.fraction * 10 ** (6 - parts.fractionDigits)
  return Number.isSafeInteger(us) ? us + 0 : undefined
}

/** `±HH[:MM[:SS]]` ending the field, in milliseconds east of UTC (as postgres-date reads it); undefined for anything else. */
function zoneOffsetMs (line: Buffer, start: number, stop: number): number | undefined {
  const sign = line[start] === PLUS ? 1 : line[start] === MINUS ? -1 : 0
  if (sign === 0) return undefined
  let seconds = 0
  let i = start + 1
  for (let part = 0; part < 3; part++) {
    const value = i + 2 <= stop ? fixedDigits(line, i, 2) : -1
    if (value < 0) return undefined
    seconds += value * [3600, 60, 1][part]!
    i += 2
    if (i === stop) return sign * seconds * 1000
    if (line[i] !== COLON) return undefined
    i++
  }
  return undefined
}

/** The number `count` ASCII digits at `start` spell, or -1. */
function fixedDigits (line: Buffer, start: number, count: number): number {
  let value = 0
  for (let i = start; i < start + count; i++) {
    const c = line[i]
    if (c === undefined || !isDigit(c)) return -1
    value = value * 10 + c - ZERO
  }
  return value
}

function isDigit (c: number): boolean { return c >= ZERO && c <= ZERO + 9 }
