/**
 * The status port: a small HTTP server, bound to loopback unless configured
 * otherwise.
 *
 *   GET  /livez /healthz /readyz /status /metrics /drift  open
 *   GET  /dashboard (and its assets under /dashboard/)    open: a static page; it asks the endpoints below with the token typed in
 *   GET  /whoami /reviews /reviews/ID /audit /audit/verify /fixes/ID   viewer (/audit?order=desc: newest first)
 *   POST /reviews/ID/approve  /reviews/ID/reject         approver (and named in the dataset's approvers, if any)
 *   GET  /cluster                                        admin: every connected peer's status, asked over libp2p
 *   POST /fixes/ID/rollback  /datasets/NAME/reconcile    admin
 *
 * While the agent drains (SIGTERM), /readyz answers 503 and every action is
 * refused with 503 CONVERGE_DRAINING: no new fix starts.
 *
 * Actions take a JSON body ({ "reason": "…" }, and "force" for a rollback) of
 * at most 64 KiB. Errors are JSON { error: { code, message } } with a stable
 * code. Callers are named by their bearer token (see auth.ts).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { z } from 'zod'
import { AddressInUseError, ConvergeError } from '../errors.ts'
import { hasRole, type Caller, type Role, type TokenRing } from './auth.ts'
import { serveDashboard } from './dashboard.ts'

export interface StatusSource {
  statusReport: () => Record<string, unknown>
  /** True once the agent is stopping: actions are refused. */
  readonly draining?: boolean
  /** Every connected peer's status, asked over libp2p. */
  clusterView?: () => Promise<unknown>
}

/** The agent's metrics, as /metrics and /drift read them. */
export interface MetricsSource {
  text: () => Promise<string>
  readonly contentType: string
  history: { toJSON: (since?: number) => unknown }
}

/** What the port's governance endpoints ask of the agent. */
export interface AdminActions {
  reviews: (filter: { dataset?: string, state?: string }) => unknown
  review: (id: string) => unknown
  approve: (id: string, caller: Caller, reason: string) => Promise<unknown>
  reject: (id: string, caller: Caller, reason: string) => Promise<unknown>
  rollback: (fixId: string, caller: Caller, reason: string, force: boolean) => Promise<unknown>
  reconcile: (dataset: string, caller: Caller) => Promise<unknown>
  audit: (filter: AuditQuery) => Promise<unknown>
  verifyAudit: () => Promise<unknown>
  fix: (fixId: string) => Promise<unknown>
}

export interface AuditQuery { dataset?: string, since?: number, until?: number, fixId?: string, correlationId?: string, kind?: string, limit: number, reverse?: boolean }

export interface StatusServerInit {
  agent: StatusSource
  admin?: AdminActions
  tokens?: TokenRing
  metrics?: MetricsSource
  host: string
  port: number
}

const MAX_BODY_BYTES = 64 * 1024
const MAX_AUDIT_LIMIT = 10_000

/** An error answered with its HTTP status and stable code. */
export class HttpError extends ConvergeError {
  constructor (readonly status: number, code: string, message: string) { super(code, message) }
}

/** Maps the agent's error codes to HTTP statuses; anything else is a 500 with its code. */
const STATUS_OF_CODE: Record<string, number> = {
  CONVERGE_REVIEW_NOT_FOUND: 404,
  CONVERGE_FIX_NOT_FOUND: 404,
  CONVERGE_UNKNOWN_DATASET: 404,
  CONVERGE_REVIEW_CLOSED: 409,
  CONVERGE_REVIEW_STALE: 409,
  CONVERGE_ROLLBACK_CONFLICT: 409,
  CONVERGE_FIX_ALREADY_ROLLED_BACK: 409,
  CONVERGE_FIX_NOT_COMMITTED: 409,
  CONVERGE_ROLLBACK_UNAVAILABLE: 409,
  CONVERGE_FIX_DATASET_MISMATCH: 409,
  CONVERGE_NOT_APPROVER: 403,
  CONVERGE_IS_SOURCE: 409,
  CONVERGE_NO_SOURCE: 503
}

function json (res: ServerResponse, code: number, body: unknown): void {
  // the holder's raw value, not `v`: Buffer.toJSON runs before a replacer sees it, and bytes go out as hex
  const text = JSON.stringify(body, function (this: Record<string, unknown>, k: string, v: unknown) {
    const raw = this[k]
    if (raw instanceof Uint8Array) return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('hex')
    return typeof v === 'bigint' ? v.toString() : v
  })
  res.writeHead(code, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' })
  res.end(text)
}

const actionBody = z.object({ reason: z.string().trim().min(1, 'give a reason').max(2000), force: z.boolean().default(false) }).strict()
const reconcileBody = z.object({ reason: z.string().max(2000).optional() }).strict()

async function readJson (req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > MAX_BODY_BYTES) throw new HttpError(413, 'BODY_TOO_LARGE', `request body over ${MAX_BODY_BYTES} bytes`)
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > MAX_BODY_BYTES) throw new HttpError(413, 'BODY_TOO_LARGE', `request body over ${MAX_BODY_BYTES} bytes`)
    chunks.push(chunk as Buffer)
  }
  if (size === 0) return {}
  try { return JSON.parse(Buffer.concat(chunks).toString('utf8')) } catch {
    throw new HttpError(400, 'BAD_REQUEST', 'request body is not valid JSON')
  }
}

function parse<T> (schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value)
  if (!r.success) throw new HttpError(400, 'BAD_REQUEST', r.error.issues.map(i => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '))
  return r.data
}

function timeParam (q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name)
  if (v === null) return undefined
  const t = /^\d+$/.test(v) ? Number(v) : Date.parse(v)
  if (!Number.isFinite(t)) throw new HttpError(400, 'BAD_REQUEST', `${name}: not a time (ISO 8601 or ms since the epoch)`)
  return t
}

export class StatusServer {
  private readonly server: Server
  private readonly init: StatusServerInit
  private address: AddressInfo | undefined

  constructor (init: StatusServerInit) {
    this.init = init
    this.server = createServer((req, res) => {
      this.route(req, res).catch((err: unknown) => this.fail(res, err))
    })
  }

  /** The governance endpoints answer once the agent's datasets are set up. */
  attach (admin: AdminActions): void { this.init.admin = admin }

  get url (): string | undefined {
    return this.address === undefined ? undefined : `http://${this.address.family === 'IPv6' ? `[${this.address.address}]` : this.address.address}:${this.address.port}`
  }

  async start (): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const fail = (err: NodeJS.ErrnoException): void => {
        reject(err.code === 'EADDRINUSE'
          ? new AddressInUseError('the status port', `${this.init.host}:${this.init.port}`, 'status.port (or --status-port, CONVERGE_STATUS_PORT; 0 takes any free port)', { cause: err })
          : err)
      }
      this.server.once('error', fail)
      this.server.listen(this.init.port, this.init.host, () => { this.server.off('error', fail); resolve() })
    })
    this.address = this.server.address() as AddressInfo
  }

  async stop (): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>(resolve => this.server.close(() => resolve()))
  }

  private fail (res: ServerResponse, err: unknown): void {
    if (res.headersSent) { res.destroy(); return }
    if (err instanceof HttpError) { json(res, err.status, { error: { code: err.code, message: err.message } }); return }
    if (err instanceof ConvergeError) { json(res, STATUS_OF_CODE[err.code] ?? 500, { error: { code: err.code, message: err.message } }); return }
    json(res, 500, { error: { code: 'INTERNAL', message: (err as Error).message } })
  }

  /** The caller behind the request, who must hold at least `role`. */
  private caller (req: IncomingMessage, role: Role): Caller {
    const tokens = this.init.tokens
    if (tokens === undefined || tokens.size === 0) throw new HttpError(403, 'NO_TOKENS', 'this agent has no status tokens configured (status.tokens); its governance endpoints are closed')
    const caller = tokens.authenticate(req.headers.authorization)
    if (caller === undefined) throw new HttpError(401, 'UNAUTHORIZED', 'a valid bearer token is needed (Authorization: Bearer …)')
    if (!hasRole(caller, role)) throw new HttpError(403, 'FORBIDDEN', `"${caller.name}" has the ${caller.role} role; this needs ${role}`)
    return caller
  }

  private admin (): AdminActions {
    if (this.init.admin === undefined) throw new HttpError(503, 'NOT_READY', 'the agent is still starting')
    return this.init.admin
  }

  /** An action (anything that may write): refused while the agent drains, so no new fix starts. */
  private action (): AdminActions {
    if (this.init.agent.draining === true) throw new HttpError(503, 'CONVERGE_DRAINING', 'the agent is stopping; it takes no new actions')
    return this.admin()
  }

  private async route (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://status')
    const path = url.pathname
    const parts = path.split('/').filter(p => p !== '').map(decodeURIComponent)
    const method = req.method ?? 'GET'
    const get = method === 'GET'
    const post = method === 'POST'
    const q = url.searchParams

    if (get && (path === '/healthz' || path === '/livez')) { json(res, 200, { ok: true }); return }
    if (get && path === '/readyz') {
      // ready once every index is built and the node is up, and not while stopping
      const ready = this.init.agent.statusReport().ready === true
      json(res, ready ? 200 : 503, { ready })
      return
    }
    if (get && path === '/status') { json(res, 200, this.init.agent.statusReport()); return }
    if (get && path === '/metrics') {
      const metrics = this.init.metrics
      if (metrics === undefined) throw new HttpError(404, 'NOT_FOUND', 'this agent keeps no metrics')
      const text = await metrics.text()
      res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' })
      res.end(text)
      return
    }
    if (get && path === '/drift') {
      const since = timeParam(q, 'since') ?? 0
      json(res, 200, { at: Date.now(), datasets: this.init.metrics?.history.toJSON(since) ?? {} })
      return
    }
    if (get && path === '/whoami') { json(res, 200, this.caller(req, 'viewer')); return }
    if (get && path === '/cluster') {
      this.caller(req, 'admin')
      if (this.init.agent.clusterView === undefined) throw new HttpError(404, 'NOT_FOUND', 'this agent cannot ask its peers')
      json(res, 200, await this.init.agent.clusterView())
      return
    }
    if (get && (path === '/' || path === '/dashboard' || path.startsWith('/dashboard/'))) {
      if (path === '/') { res.writeHead(302, { location: '/dashboard' }); res.end(); return }
      if (await serveDashboard(path, res)) return
      throw new HttpError(404, 'NOT_FOUND', `no such endpoint ${path}`)
    }

    if (parts[0] === 'reviews') {
      if (get && parts.length === 1) {
        this.caller(req, 'viewer')
        json(res, 200, { reviews: this.admin().reviews({ dataset: q.get('dataset') ?? undefined, state: q.get('state') ?? undefined }) })
        return
      }
      if (get && parts.length === 2) { this.caller(req, 'viewer'); json(res, 200, this.admin().review(parts[1]!)); return }
      if (post && parts.length === 3 && (parts[2] === 'approve' || parts[2] === 'reject')) {
        const caller = this.caller(req, 'approver')
        const body = parse(actionBody, await readJson(req))
        const admin = this.action()
        json(res, 200, parts[2] === 'approve' ? await admin.approve(parts[1]!, caller, body.reason) : await admin.reject(parts[1]!, caller, body.reason))
        return
      }
    }
    if (parts[0] === 'fixes' && parts.length >= 2) {
      if (get && parts.length === 2) { this.caller(req, 'viewer'); json(res, 200, await this.admin().fix(parts[1]!)); return }
      if (post && parts.length === 3 && parts[2] === 'rollback') {
        const caller = this.caller(req, 'admin')
        const body = parse(actionBody, await readJson(req))
        json(res, 200, await this.action().rollback(parts[1]!, caller, body.reason, body.force))
        return
      }
    }
    if (post && parts[0] === 'datasets' && parts.length === 3 && parts[2] === 'reconcile') {
      const caller = this.caller(req, 'admin')
      parse(reconcileBody, await readJson(req))
      json(res, 200, await this.action().reconcile(parts[1]!, caller))
      return
    }
    if (get && path === '/audit/verify') { this.caller(req, 'viewer'); json(res, 200, await this.admin().verifyAudit()); return }
    if (get && path === '/audit') {
      this.caller(req, 'viewer')
      const limit = q.get('limit') === null ? 100 : Number(q.get('limit'))
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_AUDIT_LIMIT) throw new HttpError(400, 'BAD_REQUEST', `limit: an integer from 1 to ${MAX_AUDIT_LIMIT}`)
      const filter: AuditQuery = {
        dataset: q.get('dataset') ?? undefined, since: timeParam(q, 'since'), until: timeParam(q, 'until'),
        fixId: q.get('fix') ?? undefined, correlationId: q.get('cid') ?? undefined, kind: q.get('kind') ?? undefined, limit,
        // newest first: the dashboard's recent fixes
        ...(q.get('order') === 'desc' ? { reverse: true } : {})
      }
      json(res, 200, await this.admin().audit(filter))
      return
    }
    const known = ['/healthz', '/livez', '/readyz', '/status', '/metrics', '/drift', '/whoami', '/cluster', '/dashboard', '/audit', '/audit/verify'].includes(path) || ['reviews', 'fixes', 'datasets'].includes(parts[0] ?? '')
    if (known && !get && !post) throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`)
    if (known && (get || post)) throw new HttpError(get ? 404 : 405, get ? 'NOT_FOUND' : 'METHOD_NOT_ALLOWED', get ? `no such endpoint ${path}` : `POST is not allowed on ${path}`)
    throw new HttpError(404, 'NOT_FOUND', `no such endpoint ${path}`)
  }
}
