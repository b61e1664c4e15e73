/**
 * Reading a secret (a peer key, a pre-shared key) from a file: the file must
 * be a regular file readable by its owner only, and small. The mode is checked
 * before the content is read, so a secret that others can read is refused
 * before this process relies on it; the content is never logged.
 */
import { open } from 'node:fs/promises'
import { SecretFileError, SecretFileModeError } from '../errors.ts'

/** Largest secret file read: keys are well under 1 KiB. */
const MAX_SECRET_BYTES = 64 * 1024

/**
 * Reads a secret file as text. Throws SecretFileModeError when group or others
 * may read it, SecretFileError when it cannot be read, is not a regular file
 * or is too large.
 */
export async function readSecretFile (what: string, path: string, maxBytes = MAX_SECRET_BYTES): Promise<string> {
  let handle
  try {
    handle = await open(path, 'r')
  } catch (err) {
    throw new SecretFileError(`cannot read ${what} ${path}: ${(err as Error).message}`, { cause: err })
  }
  try {
    // the mode of the file actually opened, not of whatever the path names a moment later
    const st = await handle.stat()
    if (!st.isFile()) throw new SecretFileError(`${what} ${path} is not a regular file`)
    const mode = st.mode & 0o777
    if ((mode & 0o077) !== 0) throw new SecretFileModeError(what, path, mode)
    if (st.size > maxBytes) throw new SecretFileError(`${what} ${path} is larger than ${maxBytes} bytes`)
    return await handle.readFile('utf8')
  } finally {
    await handle.close()
  }
}
