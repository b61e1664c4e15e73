/**
 * A structural pass over msgpack bytes before they are decoded: it walks the
 * encoding without building anything and refuses what the decoder should
 * never see. Every container's declared item count and every string's or
 * binary's declared length must fit in the bytes that follow (so a header
 * that declares 4 billion items in 5 bytes is refused before anything is
 * allocated for it), nesting may not pass `maxDepth` (so a decoder that
 * recurses cannot be driven off the stack), map keys must be short strings,
 * extension types (dates, records, anything beyond plain msgpack) and the
 * never-used byte 0xc1 are refused, and nothing may follow the one value.
 *
 * Cost: one pass, no allocation; a frame of n bytes takes O(n).
 */
import { MalformedMessageError, MessageTooDeepError } from '../errors.ts'

export interface MsgpackShapeLimits {
  /** Containers nested in containers; the top-level value is at depth 1 when it is a container. */
  maxDepth: number
  /** Longest map key, in bytes. */
  maxKeyBytes?: number
}

const DEFAULT_MAX_KEY_BYTES = 256

/**
 * A read position in the bytes being checked. Its helpers are methods rather
 * than closures made per call: the check runs on every sync frame and every
 * row taken from a source, and under tsx each named closure also costs a
 * defineProperty (keepNames) every time it is made.
 */
class Cursor {
  pos = 0
  readonly end: number
  constructor (readonly bytes: Uint8Array, readonly what: string) { this.end = bytes.length }

  fail (message: string): never { throw new MalformedMessageError(`${this.what}: not valid msgpack (${message})`) }
  need (n: number): void { if (this.end - this.pos < n) this.fail(`truncated at byte ${this.pos}`) }
  u8 (): number { this.need(1); return this.bytes[this.pos++]! }
  u16 (): number { this.need(2); const b = this.bytes; const v = (b[this.pos]! << 8) | b[this.pos + 1]!; this.pos += 2; return v }
  u32 (): number { this.need(4); const b = this.bytes; const p = this.pos; const v = b[p]! * 0x1000000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!); this.pos += 4; return v }
  skip (n: number): void { this.need(n); this.pos += n }
}

/**
 * Throws MalformedMessageError or MessageTooDeepError (naming `what`) unless
 * `bytes` hold exactly one plain msgpack value within the limits.
 */
export function checkMsgpackShape (bytes: Uint8Array, what: string, limits: MsgpackShapeLimits): void {
  const maxKey = limits.maxKeyBytes ?? DEFAULT_MAX_KEY_BYTES
  const c = new Cursor(bytes, what)
  const end = c.end
  // per open container: items still to read in it (a map counts keys and values), and whether it is a map
  const left: number[] = []
  const isMap: boolean[] = []

  let first = true
  for (;;) {
    while (left.length > 0 && left[left.length - 1] === 0) { left.pop(); isMap.pop() }
    if (!first && left.length === 0) break
    first = false
    let asKey = false
    if (left.length > 0) {
      const top = left.length - 1
      // a map holds an even count of items, keys first: an even count left means a key comes next
      asKey = isMap[top]! && left[top]! % 2 === 0
      left[top]!--
    }
    const start = c.pos
    const b = c.u8()
    // a container's item count (a map counts keys and values), or -1 for anything else
    let items = -1
    let map = false
    if (asKey) {
      let n: number
      if (b >= 0xa0 && b <= 0xbf) n = b & 0x1f
      else if (b === 0xd9) n = c.u8()
      else if (b === 0xda) n = c.u16()
      else return c.fail(`map key at byte ${start} is not a string`)
      if (n > maxKey) c.fail(`map key at byte ${start} is longer than ${maxKey} bytes`)
      c.skip(n)
    } else if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) {
      // fixint, nil, false, true
    } else if (b >= 0x80 && b <= 0x8f) { items = 2 * (b & 0x0f); map = true } else if (b >= 0x90 && b <= 0x9f) items = b & 0x0f
    else if (b >= 0xa0 && b <= 0xbf) c.skip(b & 0x1f)
    else {
      switch (b) {
        case 0xc4: case 0xd9: c.skip(c.u8()); break
        case 0xc5: case 0xda: c.skip(c.u16()); break
        case 0xc6: case 0xdb: { const n = c.u32(); if (n > end - c.pos) c.fail(`a ${b === 0xc6 ? 'binary' : 'string'} at byte ${start} declares ${n} bytes but only ${end - c.pos} follow`); c.skip(n); break }
        case 0xca: c.skip(4); break
        case 0xcb: c.skip(8); break
        case 0xcc: case 0xd0: c.skip(1); break
        case 0xcd: case 0xd1: c.skip(2); break
        case 0xce: case 0xd2: c.skip(4); break
        case 0xcf: case 0xd3: c.skip(8); break
        case 0xdc: items = c.u16(); break
        case 0xdd: items = c.u32(); break
        case 0xde: items = 2 * c.u16(); map = true; break
        case 0xdf: items = 2 * c.u32(); map = true; break
        case 0xc1: c.fail(`byte ${start} is 0xc1, which msgpack never uses`); break
        default: c.fail(`extension type 0x${b.toString(16)} at byte ${start} is not accepted`)
      }
    }
    if (items >= 0) {
      // each item takes at least one byte: a count the remaining bytes cannot hold is a lie
      if (items > end - c.pos) c.fail(`a ${map ? 'map' : 'array'} at byte ${c.pos} declares ${map ? items / 2 : items} entries but only ${end - c.pos} bytes follow`)
      if (left.length + 1 > limits.maxDepth) throw new MessageTooDeepError(what, limits.maxDepth)
      if (items > 0) { left.push(items); isMap.push(map) }
    }
  }
  if (c.pos !== end) c.fail(`${end - c.pos} bytes follow the message`)
}
