/**
 * The cluster's optional pre-shared key (libp2p private network). With it,
 * every connection is wrapped in XSalsa20 under the key before the noise
 * handshake, so a host without the key cannot even learn the agents' peer ids.
 *
 * The key comes from a file (mode 600) or an environment variable, in the
 * swarm key format @libp2p/pnet reads:
 *
 *   /key/swarm/psk/1.0.0/
 *   /base16/
 *   <64 hex digits>
 *
 * An environment variable may also hold the 64 hex digits alone.
 */
import { PskInvalidError } from '../errors.ts'
import { readSecretFile } from './secret-file.ts'

const SWARM_KEY = /^\/key\/swarm\/psk\/1\.0\.0\/\r?\n\/base16\/\r?\n([0-9a-fA-F]{64})\s*$/
const BARE_HEX = /^\s*([0-9a-fA-F]{64})\s*$/

export interface PskSource { pskFile?: string, pskEnv?: string }

/** The key in the exact bytes @libp2p/pnet expects. */
function swarmKey (hex: string): Uint8Array {
  return new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${hex.toLowerCase()}`)
}

/** Parses a swarm key (or, from an environment variable, bare hex); the message never repeats the secret. */
export function parsePsk (text: string, where: string, allowBareHex: boolean): Uint8Array {
  const m = SWARM_KEY.exec(text) ?? (allowBareHex ? BARE_HEX.exec(text) : null)
  if (m === null) throw new PskInvalidError(`${where} is not a swarm key (/key/swarm/psk/1.0.0/, /base16/, then 64 hex digits)`)
  return swarmKey(m[1]!)
}

/** Reads the pre-shared key the config names; undefined when it names none. */
export async function loadPsk (source: PskSource, env: NodeJS.ProcessEnv = process.env): Promise<Uint8Array | undefined> {
  if (source.pskFile !== undefined) return parsePsk(await readSecretFile('pre-shared key file', source.pskFile), `pre-shared key file ${source.pskFile}`, false)
  if (source.pskEnv !== undefined) {
    const value = env[source.pskEnv]
    if (value === undefined || value.trim() === '') throw new PskInvalidError(`environment variable ${source.pskEnv} (security.pskEnv) is not set`)
    return parsePsk(value, `environment variable ${source.pskEnv}`, true)
  }
  return undefined
}

/** A new random key in the swarm key format, for operators and tests. */
export function generatePsk (): string {
  return `/key/swarm/psk/1.0.0/\n/base16/\n${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('hex')}\n`
}
