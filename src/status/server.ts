/**
 * The status port: a small HTTP server, bound to loopback unless configured
 * otherwise. GET /healthz, /readyz and /status (JSON).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface StatusSource {
  statusReport: () => Record<string, unknown>
}

export interface StatusServerInit {
  agent: StatusSource
  host: string
  port: number
}

function json (res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))
  res.writeHead(code, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' })
  res.end(text)
}

export class StatusServer {
  private readonly server: Server
  private readonly init: StatusServerInit
  private address: AddressInfo | undefined

  constructor (init: StatusServerInit) {
    this.init = init
    this.server = createServer((req, res) => { this.route(req, res) })
  }

  get url (): string | undefined {
    return this.address === undefined ? undefined : `http://${this.address.family === 'IPv6' ? `[${this.address.address}]` : this.address.address}:${this.address.port}`
  }

  async start (): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(this.init.port, this.init.host, () => { this.server.off('error', reject); resolve() })
    })
    this.address = this.server.address() as AddressInfo
  }

  async stop (): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>(resolve => this.server.close(() => resolve()))
  }

  private route (req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? '/', 'http://status').pathname
    if (req.method !== 'GET') { json(res, 405, { error: { code: 'METHOD_NOT_ALLOWED', message: `${req.method} is not allowed on ${path}` } }); return }
    switch (path) {
      case '/healthz':
      case '/livez': json(res, 200, { ok: true }); return
      case '/readyz': {
        // ready once every index is built and the node is up
        const ready = this.init.agent.statusReport().ready === true
        json(res, ready ? 200 : 503, { ready })
        return
      }
      case '/status': json(res, 200, this.init.agent.statusReport()); return
      default: json(res, 404, { error: { code: 'NOT_FOUND', message: `no such endpoint ${path}` } })
    }
  }
}
