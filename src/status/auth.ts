/**
 * Bearer tokens for the status port. Secrets are read once at start from
 * files (which must not be readable by group or others) or environment
 * variables, kept only as SHA-256 digests, and compared in constant time
 * against every token so the time taken says nothing about which one matched.
 * Neither a token nor its digest is ever logged.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { ConfigError } from '../errors.ts'

export type Role = 'viewer' | 'approver' | 'admin'

const RANK: Record<Role, number> = { viewer: 0, approver: 1, admin: 2 }

export interface TokenSpec { name: string, role: Role, tokenFile?: string, tokenEnv?: string }
export interface Caller { name: string, role: Role }

/** Shorter secrets are refused: a token is a password that a script holds. */
const MIN_TOKEN_CHARS = 16

const digest = (secret: string): Buffer => createHash('sha256').update(secret, 'utf8').digest()

export function hasRole (caller: Caller, needed: Role): boolean { return RANK[caller.role] >= RANK[needed] }

export class TokenRing {
  private constructor (private readonly tokens: Array<Caller & { digest: Buffer }>) {}

  get size (): number { return this.tokens.length }

  static async load (specs: readonly TokenSpec[], env: NodeJS.ProcessEnv = process.env): Promise<TokenRing> {
    const tokens: Array<Caller & { digest: Buffer }> = []
    for (const spec of specs) {
      const secret = spec.tokenFile !== undefined ? await readTokenFile(spec) : env[spec.tokenEnv!]
      if (secret === undefined || secret.trim() === '') throw new ConfigError(`status token "${spec.name}": environment variable ${spec.tokenEnv} is not set`)
      const value = secret.trim()
      if (value.length < MIN_TOKEN_CHARS) throw new ConfigError(`status token "${spec.name}": the secret is shorter than ${MIN_TOKEN_CHARS} characters`)
      tokens.push({ name: spec.name, role: spec.role, digest: digest(value) })
    }
    return new TokenRing(tokens)
  }

  /** The caller an `Authorization: Bearer …` header names, or undefined. */
  authenticate (header: string | undefined): Caller | undefined {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')
    if (m === null) return undefined
    const given = digest(m[1]!)
    let found: Caller | undefined
    // every token is compared, match or not
    for (const t of this.tokens) if (timingSafeEqual(given, t.digest) && found === undefined) found = { name: t.name, role: t.role }
    return found
  }
}

async function readTokenFile (spec: TokenSpec): Promise<string> {
  const path = spec.tokenFile!
  let mode: number
  try {
    mode = (await stat(path)).mode
  } catch (err) {
    throw new ConfigError(`status token "${spec.name}": cannot read ${path}: ${(err as Error).message}`, { cause: err })
  }
  if ((mode & 0o077) !== 0) throw new ConfigError(`status token "${spec.name}": ${path} is readable by group or others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`)
  return await readFile(path, 'utf8')
}
