/**
 * A query's rows through `COPY (…) TO STDOUT` in text format, for full scans.
 *
 * Why COPY rather than a cursor: the server sends a bare line per row (no
 * portal fetches), and the client parses the bytes itself instead of making
 * a protocol message, a string per field and a row per row first. On a
 * million small rows that halved the client's share of a scan.
 *
 * Why text format: every field is the text of the column type's output
 * function, exactly what a plain query returns in text mode, so the same
 * type parsers turn it into the same JavaScript values (only COPY's
 * backslash escapes come off first). Binary COPY would need a decoder per
 * type, each a chance to differ from the query path.
 *
 * Memory stays bounded: rows are decoded as each line arrives (the protocol
 * parser reuses its buffer, so nothing may keep a view into it) into batches;
 * while enough batches wait for the consumer, the connection's socket is
 * paused, and the server waits on TCP flow control.
 */
import type pg from 'pg'
import { ConvergeError } from '../errors.ts'

/** A COPY line that does not have the select list's shape: the server and this reader disagree on the format. */
export class CopyFormatError extends ConvergeError {
  constructor (message: string) { super('CONVERGE_STORE_COPY_FORMAT', message) }
}

/** How one field's text becomes the value a text-mode query would have returned. */
type FieldDecoder = (line: Buffer, start: number, end: number) => unknown

/** Bytes of COPY's text format (also read by pg-copy-canonical.ts). */
export const TAB = 0x09
export const NEWLINE = 0x0a
export const BACKSLASH = 0x5c
export const MINUS = 0x2d
export const ZERO = 0x30
/** The N of `\N`, COPY's NULL. */
export const LETTER_N = 0x4e

/** PostgreSQL type oids whose text is a plain decimal that fits a double exactly (pg's parser: parseInt(text, 10)). */
export const INT2_OID = 21
export const INT4_OID = 23
/** int8's text is a plain decimal too, exact as a double below 2^53. */
export const INT8_OID = 20
/** Types whose text pg-copy-canonical.ts reads itself. */
export const NUMERIC_OID = 1700
export const DATE_OID = 1082
export const TIMESTAMP_OID = 1114
export const TIMESTAMPTZ_OID = 1184
/** json (not jsonb): PostgreSQL keeps and prints its text as written. */
export const JSON_OID = 114

/** Undoes COPY's text escapes (`\\`, `\t`, `\n`, …, octal `\ooo`, hex `\xhh`, any other `\c` as `c`) at the byte level. */
function unescapeField (line: Buffer, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafe(end - start)
  let n = 0
  for (let i = start; i < end; i++) {
    const c = line[i]!
    if (c !== BACKSLASH || i + 1 >= end) { out[n++] = c; continue }
    const e = line[++i]!
    if (e >= ZERO && e <= ZERO + 7) {
      let v = e - ZERO
      for (let k = 0; k < 2 && i + 1 < end && line[i + 1]! >= ZERO && line[i + 1]! <= ZERO + 7; k++) v = v * 8 + line[++i]! - ZERO
      out[n++] = v & 0xff
    } else if (e === 0x78 /* x */ && i + 1 < end && hexDigit(line[i + 1]!) >= 0) {
      let v = hexDigit(line[++i]!)
      if (i + 1 < end && hexDigit(line[i + 1]!) >= 0) v = v * 16 + hexDigit(line[++i]!)
      out[n++] = v
    } else {
      out[n++] = e === 0x62 ? 0x08 : e === 0x66 ? 0x0c : e === 0x6e ? NEWLINE : e === 0x72 ? 0x0d : e === 0x74 ? TAB : e === 0x76 ? 0x0b : e
    }
  }
  return out.subarray(0, n)
}

function hexDigit (c: number): number {
  if (c >= ZERO && c <= ZERO + 9) return c - ZERO
  const l = c | 0x20
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1
}

function fieldText (line: Buffer, start: number, end: number): string {
  const escape = line.indexOf(BACKSLASH, start)
  return escape < 0 || escape >= end ? line.toString('utf8', start, end) : unescapeField(line, start, end).toString('utf8')
}

/**
 * The decoder for a column of type `oid` whose text a query would hand to
 * `parse`. Types read as their text (parse is the identity) skip the call;
 * int2 and int4 are read from their digits, which is what parseInt gives.
 */
export function fieldDecoder (oid: number, parse: (text: string) => unknown, identity: (text: string) => unknown): FieldDecoder {
  if (parse === identity) return fieldText
  if (oid === INT2_OID || oid === INT4_OID) {
    return (line, start, end) => {
      let i = start
      const negative = line[i] === MINUS
      if (negative) i++
      let n = 0
      for (; i < end; i++) {
        const d = line[i]! - ZERO
        if (d < 0 || d > 9) return parse(fieldText(line, start, end))
        n = n * 10 + d
      }
      return i === start || (negative && i === start + 1) ? parse(fieldText(line, start, end)) : negative ? -n : n
    }
  }
  return (line, start, end) => parse(fieldText(line, start, end))
}

/**
 * One line's values (fields split on tabs, `\N` as NULL, the newline
 * dropped), each through its column's decoder.
 */
export function decodeFields (line: Buffer, fields: readonly FieldDecoder[]): unknown[] {
  const values = new Array<unknown>(fields.length)
  const end = line.length - 1
  if (line[end] !== NEWLINE) throw new CopyFormatError('a COPY line does not end with a newline')
  let start = 0
  for (let f = 0; f < fields.length; f++) {
    let stop = start
    while (stop < end && line[stop] !== TAB) stop++
    if ((stop === end) !== (f === fields.length - 1)) throw new CopyFormatError(`a COPY line does not have ${fields.length} fields`)
    values[f] = isNull(line, start, stop) ? null : fields[f]!(line, start, stop)
    start = stop + 1
  }
  return values
}

const isNull = (line: Buffer, start: number, stop: number): boolean => stop - start === 2 && line[start] === BACKSLASH && line[start + 1] === LETTER_N

export interface CopyRowsInit<T> {
  /** `COPY (SELECT …) TO STDOUT`, text format. */
  text: string
  /** A line (with its newline) to a row; called as the line arrives, so it must not keep the buffer. */
  decode: (line: Buffer) => T
  /** Rows per batch handed out. */
  batchSize: number
  /** Batches decoded ahead of the consumer before the socket is paused. */
  readAhead?: number
}

/**
 * A pg Submittable that runs one COPY TO STDOUT and hands out its rows, in
 * batches. Settles on the server's ReadyForQuery (or its error); `next()`
 * then returns what is left and undefined at the end.
 */
export class CopyRows<T> implements pg.Submittable {
  private readonly init: CopyRowsInit<T>
  private readonly readAhead: number
  private batch: T[] = []
  private readonly ready: T[][] = []
  private failure: Error | undefined
  private finished = false
  private waiter: (() => void) | undefined
  private stream: pg.Connection['stream'] | undefined
  private paused = false
  /** Rows the server said it sent (COPY's command tag), checked against the rows decoded. */
  private rows = 0

  constructor (init: CopyRowsInit<T>) {
    this.init = init
    this.readAhead = init.readAhead ?? 2
  }

  /** The COPY statement it runs. */
  get text (): string { return this.init.text }

  /** Whether the server is done with the COPY (finished or failed it): the connection takes statements again. */
  get ended (): boolean { return this.finished }

  submit (connection: pg.Connection): void {
    this.stream = connection.stream
    connection.query(this.init.text)
  }

  handleCopyData (message: { chunk: Buffer }): void {
    if (this.failure !== undefined) return
    try {
      this.batch.push(this.init.decode(message.chunk))
    } catch (err) {
      this.fail(err as Error)
      return
    }
    this.rows++
    if (this.batch.length >= this.init.batchSize) this.hand()
  }

  handleCommandComplete (message: { text?: string }): void {
    const reported = /^COPY (\d+)$/.exec(message.text ?? '')
    if (reported !== null && Number(reported[1]) !== this.rows) this.fail(new CopyFormatError(`the server sent ${reported[1]} rows, ${this.rows} were read`))
  }

  handleReadyForQuery (): void {
    if (this.batch.length > 0) this.hand()
    this.finished = true
    this.wake()
  }

  handleError (err: Error): void {
    this.fail(err)
    this.finished = true
    this.wake()
  }

  handleEmptyQuery (): void {}

  /**
   * The next batch, or undefined once the COPY ended; throws what failed it.
   * (No race against another promise here: a race with a long-lived pending
   * promise keeps every batch it ever resolved with.)
   */
  async next (): Promise<T[] | undefined> {
    for (;;) {
      if (this.failure !== undefined) throw this.failure
      const batch = this.ready.shift()
      if (batch !== undefined) {
        if (this.paused && this.ready.length < this.readAhead) { this.paused = false; this.stream?.resume() }
        return batch
      }
      if (this.finished) return undefined
      await new Promise<void>(resolve => { this.waiter = resolve })
    }
  }

  /** Fails the reading side with `err` (an abort); the server goes on sending until the connection is dropped. */
  stop (err: Error): void { this.fail(err) }

  private hand (): void {
    this.ready.push(this.batch)
    this.batch = []
    if (!this.paused && this.ready.length >= this.readAhead) { this.paused = true; this.stream?.pause() }
    this.wake()
  }

  private fail (err: Error): void {
    this.failure ??= err
    this.ready.length = 0
    this.batch = []
    if (this.paused) { this.paused = false; this.stream?.resume() }
    this.wake()
  }

  private wake (): void {
    const w = this.waiter
    this.waiter = undefined
    w?.()
  }
}
