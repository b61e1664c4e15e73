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
 * Throws MalformedMessageError or MessageTooDeepError (naming `what`) unless
 * `bytes` hold exactly one plain msgpack value within the limits.
 */
export function checkMsgpackShape (bytes: Uint8Array, what: string, limits: MsgpackShapeLimits): void {
  const maxKey = limits.maxKeyBytes ?? DEFAULT_MAX_KEY_BYTES
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const end = bytes.length
  let pos = 0
  // per open container: items still to read in it (a map counts keys and values), and whether it is a map
  const left: number[] = []
  const isMap: boolean[] = []

  const fail = (message: string): never => { throw new MalformedMessageError(`${what}: not valid msgpack (${message})`) }
  const need = (n: number): void => { if (end - pos < n) fail(`truncated at byte ${pos}`) }
  const u8 = (): number => { need(1); return bytes[pos++]! }
  const u16 = (): number => { need(2); const v = view.getUint16(pos); pos += 2; return v }
  const u32 = (): number => { need(4); const v = view.getUint32(pos); pos += 4; return v }
  const skip = (n: number): void => { need(n); pos += n }
  const open = (items: number, map: boolean): void => {
    // each item takes at least one byte: a count the remaining bytes cannot hold is a lie
    if (items > end - pos) fail(`a ${map ? 'map' : 'array'} at byte ${pos} declares ${map ? items / 2 : items} entries but only ${end - pos} bytes follow`)
    if (left.length + 1 > limits.maxDepth) throw new MessageTooDeepError(what, limits.maxDepth)
    if (items > 0) { left.push(items); isMap.push(map) }
  }

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
    const start = pos
    const b = u8()
    if (asKey) {
      let n: number
      if (b >= 0xa0 && b <= 0xbf) n = b & 0x1f
      else if (b === 0xd9) n = u8()
      else if (b === 0xda) n = u16()
      else return fail(`map key at byte ${start} is not a string`)
      if (n > maxKey) fail(`map key at byte ${start} is longer than ${maxKey} bytes`)
      skip(n)
    } else if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) {
      // fixint, nil, false, true
    } else if (b >= 0x80 && b <= 0x8f) open(2 * (b & 0x0f), true)
    else if (b >= 0x90 && b <= 0x9f) open(b & 0x0f, false)
    else if (b >= 0xa0 && b <= 0xbf) skip(b & 0x1f)
    else {
      switch (b) {
        case 0xc4: case 0xd9: skip(u8()); break
        case 0xc5: case 0xda: skip(u16()); break
        case 0xc6: case 0xdb: { const n = u32(); if (n > end - pos) fail(`a ${b === 0xc6 ? 'binary' : 'string'} at byte ${start} declares ${n} bytes but only ${end - pos} follow`); skip(n); break }
        case 0xca: skip(4); break
        case 0xcb: skip(8); break
        case 0xcc: case 0xd0: skip(1); break
        case 0xcd: case 0xd1: skip(2); break
        case 0xce: case 0xd2: skip(4); break
        case 0xcf: case 0xd3: skip(8); break
        case 0xdc: open(u16(), false); break
        case 0xdd: open(u32(), false); break
        case 0xde: open(2 * u16(), true); break
        case 0xdf: open(2 * u32(), true); break
        case 0xc1: fail(`byte ${start} is 0xc1, which msgpack never uses`); break
        default: fail(`extension type 0x${b.toString(16)} at byte ${start} is not accepted`)
      }
    }
  }
  if (pos !== end) fail(`${end - pos} bytes follow the message`)
}
