/**
 * 64-bit hashes and sums without a bigint per operation. Every interface
 * carries 64-bit values as bigint, but each bigint operation (>>, &, +)
 * allocates a new bigint, and a sync does several per row and per node. A
 * bigint written into a BigUint64Array and read back as two 32-bit halves
 * allocates nothing, so the hot loops (summing entry hashes, truncating
 * them, placing key hashes in tree nodes) work on the halves instead.
 *
 * Values are taken mod 2^64 as they are written (a BigUint64Array stores
 * ToBigUint64 of what it is given), which is the arithmetic the tree's sums
 * use anyway.
 */
import { endianness } from 'node:os'

/** 2^64 - 1: a bigint `& U64_MASK` is taken mod 2^64. */
export const U64_MASK = (1n << 64n) - 1n

const scratch = new BigUint64Array(1)
const halves = new Uint32Array(scratch.buffer)
const HI = endianness() === 'LE' ? 1 : 0
const LO = 1 - HI
const TWO_32 = 2 ** 32

/** The high 32 bits of a 64-bit value, as an unsigned number. */
export function high32 (x: bigint): number {
  scratch[0] = x
  return halves[HI]!
}

/** The low 32 bits of a 64-bit value, as an unsigned number. */
export function low32 (x: bigint): number {
  scratch[0] = x
  return halves[LO]!
}

/** Whether two values agree on their low `bits` bits (1 to 64), mod 2^64. */
export function sameLowBits (a: bigint, b: bigint, bits: number): boolean {
  scratch[0] = a
  const aHi = halves[HI]!; const aLo = halves[LO]!
  scratch[0] = b
  const bHi = halves[HI]!; const bLo = halves[LO]!
  if (bits < 32) return aLo % 2 ** bits === bLo % 2 ** bits
  if (aLo !== bLo) return false
  return bits >= 64 ? aHi === bHi : aHi % 2 ** (bits - 32) === bHi % 2 ** (bits - 32)
}

/** A sum mod 2^64 kept as two unsigned 32-bit halves. */
export class U64Sum {
  private hi = 0
  private lo = 0

  add (x: bigint): void {
    scratch[0] = x
    const lo = this.lo + halves[LO]!
    // a carry out of the low half goes into the high half; `>>> 0` takes each half mod 2^32
    this.hi = (this.hi + halves[HI]! + (lo >= TWO_32 ? 1 : 0)) >>> 0
    this.lo = lo >>> 0
  }

  subtract (x: bigint): void {
    scratch[0] = x
    const lo = this.lo - halves[LO]!
    this.hi = (this.hi - halves[HI]! - (lo < 0 ? 1 : 0)) >>> 0
    this.lo = lo >>> 0
  }

  /** Adds another sum. */
  plus (other: U64Sum): void {
    const lo = this.lo + other.lo
    this.hi = (this.hi + other.hi + (lo >= TWO_32 ? 1 : 0)) >>> 0
    this.lo = lo >>> 0
  }

  copy (): U64Sum {
    const out = new U64Sum()
    out.hi = this.hi
    out.lo = this.lo
    return out
  }

  /** Whether the sum is `x` mod 2^64. */
  equals (x: bigint): boolean {
    scratch[0] = x
    return halves[HI] === this.hi && halves[LO] === this.lo
  }

  toBigInt (): bigint {
    halves[HI] = this.hi
    halves[LO] = this.lo
    return scratch[0]!
  }

  /** The sum of some values mod 2^64. */
  static of (values: Iterable<bigint>): U64Sum {
    const sum = new U64Sum()
    for (const x of values) sum.add(x)
    return sum
  }
}
