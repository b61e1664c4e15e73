/** Bytes as lowercase hex, without copying them: the map key for canonical keys and rows. */
export function hexOf (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}
