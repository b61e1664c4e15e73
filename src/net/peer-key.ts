/**
 * The agent's persistent libp2p identity: an Ed25519 key in a file readable
 * only by its owner. The same key gives the same peer id on every start,
 * which is what peers' allowlists and SoT bindings refer to.
 */
import { mkdir, stat, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { PeerKeyError, SecretFileError } from '../errors.ts'
import { readSecretFile } from '../security/secret-file.ts'

interface KeyFile { type: 'converge-peer-key', key: string }

export async function createPeerKeyFile (path: string): Promise<PrivateKey> {
  const key = await generateKeyPair('Ed25519')
  await mkdir(dirname(path), { recursive: true })
  const body: KeyFile = { type: 'converge-peer-key', key: Buffer.from(privateKeyToProtobuf(key)).toString('base64') }
  await writeFile(path, JSON.stringify(body) + '\n', { mode: 0o600, flag: 'wx' })
  return key
}

/**
 * Reads the key file. Refused (SecretFileModeError, naming the file and the
 * chmod to run) when group or others may read it: whoever can read the key
 * can speak as this agent, so a key that leaked is not used quietly.
 */
export async function readPeerKeyFile (path: string): Promise<PrivateKey> {
  let text: string
  try {
    text = await readSecretFile('peer key file', path)
  } catch (err) {
    if (err instanceof SecretFileError) throw new PeerKeyError(err.message, { cause: err })
    throw err
  }
  try {
    const body = JSON.parse(text) as Partial<KeyFile>
    if (body.type !== 'converge-peer-key' || typeof body.key !== 'string') throw new Error('not a converge peer key file')
    return privateKeyFromProtobuf(Buffer.from(body.key, 'base64'))
  } catch (err) {
    throw new PeerKeyError(`peer key file ${path} is malformed: ${(err as Error).message}`, { cause: err })
  }
}

/**
 * Reads the key file, creating it (mode 600) when it does not exist yet. An
 * existing file's mode is checked, never silently fixed: a key that others
 * could read may already be copied.
 */
export async function loadOrCreatePeerKey (path: string): Promise<PrivateKey> {
  try {
    await stat(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return await createPeerKeyFile(path)
    throw err
  }
  return await readPeerKeyFile(path)
}

export function peerIdOf (key: PrivateKey): string {
  return peerIdFromPrivateKey(key).toString()
}
