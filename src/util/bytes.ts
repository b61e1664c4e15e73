/** Up to this many bytes, hex is built in JS: cheaper than making a Buffer to call toString on (keys are mostly this short). */
const SHORT_HEX_BYTES = 32
const HEX_PAIRS = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'))

/** Bytes as lowercase hex, without copying them: the map key for canonical keys and rows. */
export function hexOf (bytes: Uint8Array): string {
  if (bytes.length <= SHORT_HEX_BYTES) {
    let out = ''
    for (let i = 0; i < bytes.length; i++) out += HEX_PAIRS[bytes[i]!]!
    return out
  }
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

/** Bytes passed to String.fromCharCode at once, well under any engine's limit on arguments. */
const LATIN1_CHUNK = 8192

/**
 * Bytes as a string of one char code (0-255) per byte: a map key for
 * canonical keys, half the length of hex and about a third of its cost for
 * short keys (no Buffer is made). Two byte strings give the same string
 * exactly when they are equal, and strings compare (<, >) in the unsigned
 * byte order Buffer.compare uses, shorter first on a common prefix.
 */
export function latin1Of (bytes: Uint8Array): string {
  if (bytes.length <= LATIN1_CHUNK) return String.fromCharCode.apply(null, bytes as unknown as number[])
  let out = ''
  for (let at = 0; at < bytes.length; at += LATIN1_CHUNK) out += String.fromCharCode.apply(null, bytes.subarray(at, at + LATIN1_CHUNK) as unknown as number[])
  return out
}

/** The bytes latin1Of was given, back from its string. */
export function bytesOfLatin1 (text: string): Uint8Array {
  return Buffer.from(text, 'latin1')
}

/** Whether two byte strings are equal: a loop, cheaper than a call into Buffer.compare for short ones (keys, rows). */
export function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
