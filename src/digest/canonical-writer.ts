/**
 * The canonical encoding (row-codec.ts: msgpack as msgpackr packs normalized
 * values) of the simplest values, written straight into bytes: 32-bit
 * integers, ASCII strings, null and array headers.
 *
 * Why: a scan that reads its values as bytes (PostgreSQL's COPY) can then
 * turn a line into a row's canonical bytes without a string, a value array
 * and a general-purpose encoder per row. The output is byte for byte what
 * packValues gives for the same values (the tests hold it to that); any
 * other value goes through packValues.
 *
 * Rows are written into slabs; a written row is a view into its slab, and a
 * slab is never reused, so a view stays valid as long as it is held.
 */

const SLAB_BYTES = 256 * 1024

export class CanonicalWriter {
  private slab = new Uint8Array(0)
  private position = 0

  /** Where the next bytes go; with room for `bytes` more. */
  begin (bytes: number): number {
    if (this.position + bytes > this.slab.length) {
      this.slab = new Uint8Array(Math.max(SLAB_BYTES, bytes))
      this.position = 0
    }
    return this.position
  }

  /** Drops what was written since `start` (from begin()); returns undefined, for a caller giving up on a row. */
  abandon (start: number): undefined {
    this.position = start
    return undefined
  }

  /** msgpack array header for `length` elements (fixarray, array 16, array 32). */
  arrayHeader (length: number): void {
    const s = this.slab
    if (length < 0x10) s[this.position++] = 0x90 | length
    else if (length < 0x10000) { s[this.position++] = 0xdc; s[this.position++] = length >> 8; s[this.position++] = length & 0xff } else { s[this.position++] = 0xdd; this.u32(length) }
  }

  nil (): void { this.slab[this.position++] = 0xc0 }

  /**
   * A safe integer (a number, as RowCodec normalizes integers below 2^53):
   * in [-2^31, 2^32) a positive fixint below 0x80 (msgpackr without records)
   * or the narrowest uint or int form, beyond that a float64, as msgpackr
   * packs a number.
   */
  integer (value: number): void {
    const s = this.slab
    if (value >>> 0 !== value && value >> 0 !== value) {
      s[this.position++] = 0xcb
      new DataView(s.buffer, s.byteOffset).setFloat64(this.position, value)
      this.position += 8
    } else if (value >>> 0 === value) {
      if (value < 0x80) s[this.position++] = value
      else if (value < 0x100) { s[this.position++] = 0xcc; s[this.position++] = value } else if (value < 0x10000) { s[this.position++] = 0xcd; s[this.position++] = value >> 8; s[this.position++] = value & 0xff } else { s[this.position++] = 0xce; this.u32(value) }
    } else if (value >= -0x20) s[this.position++] = 0x100 + value
    else if (value >= -0x80) { s[this.position++] = 0xd0; s[this.position++] = value + 0x100 } else if (value >= -0x8000) { s[this.position++] = 0xd1; s[this.position++] = (value >> 8) & 0xff; s[this.position++] = value & 0xff } else { s[this.position++] = 0xd2; this.u32(value >>> 0) }
  }

  /** A string whose UTF-8 bytes are `from[start, end)`, all ASCII (the caller checks): str header by byte length, then the bytes. */
  asciiString (from: Uint8Array, start: number, end: number): void {
    const length = end - start
    const s = this.slab
    if (length < 0x20) s[this.position++] = 0xa0 | length
    else if (length < 0x100) { s[this.position++] = 0xd9; s[this.position++] = length } else if (length < 0x10000) { s[this.position++] = 0xda; s[this.position++] = length >> 8; s[this.position++] = length & 0xff } else { s[this.position++] = 0xdb; this.u32(length) }
    this.bytes(from, start, end)
  }

  /** Raw bytes: an encoding written before, copied (a key from its row's column encodings). */
  bytes (from: Uint8Array, start: number, end: number): void {
    const s = this.slab
    let p = this.position
    // a loop beats TypedArray.set (and its subarray) for the short runs rows are made of
    if (end - start < 64) { for (let i = start; i < end; i++) s[p++] = from[i]! } else { s.set(from.subarray(start, end), p); p += end - start }
    this.position = p
  }

  /** The slab rows are being written into (to copy a column encoding back out of it). */
  get buffer (): Uint8Array { return this.slab }
  get offset (): number { return this.position }

  private u32 (value: number): void {
    const s = this.slab
    s[this.position++] = value >>> 24
    s[this.position++] = (value >>> 16) & 0xff
    s[this.position++] = (value >>> 8) & 0xff
    s[this.position++] = value & 0xff
  }
}

