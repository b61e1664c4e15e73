/**
 * The agent's persistent libp2p identity: an Ed25519 key in a file readable
 * only by its owner. The same key gives the same peer id on every start,
 * which is what peers' allowlists and SoT bindings refer to.
 */
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { PeerKeyError } from '../errors.ts'

interface KeyFile { type: 'converge-peer-key', key: string }

export async function createPeerKeyFile (path: string): Promise<PrivateKey> {
  const key = await generateKeyPair('Ed25519')
  await mkdir(dirname(path), { recursive: true })
  const body: KeyFile = { type: 'converge-peer-key', key: Buffer.from(privateKeyToProtobuf(key)).toString('base64') }
  await writeFile(path, JSON.stringify(body) + '\n', { mode: 0o600, flag: 'wx' })
  return key
}

export async function readPeerKeyFile (path: string): Promise<PrivateKey> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new PeerKeyError(`cannot read peer key file ${path}: ${(err as Error).message}`, { cause: err })
  }
  const mode = (await stat(path)).mode & 0o777
  if ((mode & 0o077) !== 0) throw new PeerKeyError(`peer key file ${path} is readable by others (mode ${mode.toString(8)}); run chmod 600 ${path}`)
  try {
    const body = JSON.parse(text) as Partial<KeyFile>
    if (body.type !== 'converge-peer-key' || typeof body.key !== 'string') throw new Error('not a converge peer key file')
    return privateKeyFromProtobuf(Buffer.from(body.key, 'base64'))
  } catch (err) {
    throw new PeerKeyError(`peer key file ${path} is malformed: ${(err as Error).message}`, { cause: err })
  }
}

/** Reads the key file, creating it (mode 600) when it does not exist yet. */
export async function loadOrCreatePeerKey (path: string): Promise<PrivateKey> {
  try {
    await stat(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return await createPeerKeyFile(path)
    throw err
  }
  await chmod(path, 0o600).catch(() => undefined)
  return await readPeerKeyFile(path)
}

export function peerIdOf (key: PrivateKey): string {
  return peerIdFromPrivateKey(key).toString()
}
