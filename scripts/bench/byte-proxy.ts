/**
 * A byte-counting TCP proxy on 127.0.0.1, run as a child process so that the
 * copying costs neither heap nor RSS of the process being measured. Clients
 * connect to `port` instead of the target; the proxy counts every byte each
 * way (TCP payload, i.e. the PostgreSQL wire protocol including TLS-less
 * startup and authentication) and reports the totals on request.
 *
 * The same file is the child's entry point: it runs as the proxy when
 * CONVERGE_BENCH_PROXY_TARGET is set (host:port).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { createConnection, createServer, type AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'

const TARGET_ENV = 'CONVERGE_BENCH_PROXY_TARGET'

export interface ByteCounts {
  /** Client → server bytes. */
  toServer: number
  /** Server → client bytes. */
  toClient: number
  /** Connections accepted. */
  connections: number
}

export interface ByteProxy {
  /** Port on 127.0.0.1 to connect to instead of the target. */
  readonly port: number
  /** Totals since the proxy started. */
  counts: () => Promise<ByteCounts>
  stop: () => Promise<void>
}

type Reply = { t: 'listening', port: number } | ({ t: 'counts' } & ByteCounts)

/** Starts a proxy in a child process, forwarding to host:port. */
export async function startByteProxy (host: string, port: number): Promise<ByteProxy> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [], {
    env: { ...process.env, [TARGET_ENV]: `${host}:${port}` },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc']
  })
  const pending: Array<{ resolve: (r: Reply) => void, reject: (err: Error) => void }> = []
  const exited = new Promise<void>(resolve => child.once('exit', code => {
    for (const p of pending.splice(0)) p.reject(new Error(`byte proxy exited (code ${String(code)})`))
    resolve()
  }))
  child.on('message', (m: Reply) => { pending.shift()?.resolve(m) })
  const next = async (): Promise<Reply> => await new Promise<Reply>((resolve, reject) => { pending.push({ resolve, reject }) })
  const listening = await next()
  if (listening.t !== 'listening') throw new Error('byte proxy did not start')
  return {
    port: listening.port,
    counts: async () => {
      const reply = next()
      child.send('counts')
      const r = await reply
      if (r.t !== 'counts') throw new Error('byte proxy answered out of turn')
      return { toServer: r.toServer, toClient: r.toClient, connections: r.connections }
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      await exited
    }
  }
}

export function addCounts (a: ByteCounts, b: ByteCounts): ByteCounts {
  return { toServer: a.toServer + b.toServer, toClient: a.toClient + b.toClient, connections: a.connections + b.connections }
}

export function subtractCounts (after: ByteCounts, before: ByteCounts): ByteCounts {
  return { toServer: after.toServer - before.toServer, toClient: after.toClient - before.toClient, connections: after.connections - before.connections }
}

function runProxy (target: string): void {
  const colon = target.lastIndexOf(':')
  const host = target.slice(0, colon)
  const port = Number(target.slice(colon + 1))
  const totals: ByteCounts = { toServer: 0, toClient: 0, connections: 0 }
  const server = createServer(client => {
    totals.connections++
    const upstream = createConnection({ host, port })
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    client.on('data', (chunk: Buffer) => { totals.toServer += chunk.length })
    upstream.on('data', (chunk: Buffer) => { totals.toClient += chunk.length })
    client.pipe(upstream)
    upstream.pipe(client)
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  server.listen(0, '127.0.0.1', () => {
    process.send?.({ t: 'listening', port: (server.address() as AddressInfo).port })
  })
  process.on('message', (m: unknown) => {
    if (m === 'counts') process.send?.({ t: 'counts', ...totals })
  })
  // the parent went away: so does the proxy
  process.on('disconnect', () => process.exit(0))
}

const target = process.env[TARGET_ENV]
if (target !== undefined && process.send !== undefined) runProxy(target)
