/**
 * Talks to a running agent's status port for the CLI: one JSON request, the
 * bearer token from --token-file or CONVERGE_TOKEN, and the agent's own error
 * code and message when it refuses.
 */
import { readFile } from 'node:fs/promises'
import { ConvergeError } from '../errors.ts'

export const DEFAULT_STATUS_URL = 'http://127.0.0.1:7600'

export interface PortOptions { url: string, tokenFile?: string }

/** Thrown when the agent answered with an error; carries its stable code. */
export class AgentRefusedError extends ConvergeError {
  constructor (readonly status: number, readonly remoteCode: string, message: string) {
    super('CONVERGE_AGENT_REFUSED', `${message} [${remoteCode}]`)
  }
}

async function token (opts: PortOptions): Promise<string | undefined> {
  if (opts.tokenFile !== undefined) {
    try { return (await readFile(opts.tokenFile, 'utf8')).trim() } catch (err) {
      throw new ConvergeError('CONVERGE_TOKEN_UNREADABLE', `cannot read token file ${opts.tokenFile}: ${(err as Error).message}`)
    }
  }
  const fromEnv = process.env.CONVERGE_TOKEN?.trim()
  return fromEnv === '' ? undefined : fromEnv
}

export async function callAgent<T = unknown> (opts: PortOptions, path: string, init: { method?: 'GET' | 'POST', body?: unknown, timeoutMs?: number } = {}): Promise<T> {
  const secret = await token(opts)
  const headers: Record<string, string> = { accept: 'application/json' }
  if (secret !== undefined) headers.authorization = `Bearer ${secret}`
  if (init.body !== undefined) headers['content-type'] = 'application/json'
  let res: Response
  try {
    res = await fetch(new URL(path, opts.url), {
      method: init.method ?? 'GET', headers, body: init.body === undefined ? undefined : JSON.stringify(init.body), signal: AbortSignal.timeout(init.timeoutMs ?? 30_000)
    })
  } catch (err) {
    const cause = (err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message
    throw new ConvergeError('CONVERGE_STATUS_UNREACHABLE', `cannot reach ${opts.url}: ${cause}`)
  }
  const text = await res.text()
  let body: unknown
  try { body = text === '' ? undefined : JSON.parse(text) } catch {
    throw new ConvergeError('CONVERGE_STATUS_ERROR', `${opts.url} answered ${res.status} with a body that is not JSON`)
  }
  if (!res.ok) {
    const e = (body as { error?: { code?: string, message?: string } } | undefined)?.error
    throw new AgentRefusedError(res.status, e?.code ?? `HTTP_${res.status}`, e?.message ?? `${opts.url} answered ${res.status}`)
  }
  return body as T
}
