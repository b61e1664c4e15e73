/**
 * The dashboard: one static page and its script and style, served by the
 * status port from src/status/dashboard/. The page holds no data of its own:
 * it asks /status, /drift, /reviews, /audit and /cluster with the bearer
 * token typed into it (kept in the tab's sessionStorage), so every role check
 * stays on the endpoints.
 *
 * A strict content security policy: only this origin's script and style, no
 * inline script, no framing; the page renders data as text, never as HTML.
 */
import { readFile } from 'node:fs/promises'
import type { ServerResponse } from 'node:http'

const ASSETS: Record<string, { file: string, type: string }> = {
  '/dashboard': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' }
}

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/** Read once: the assets are a few KiB and do not change while the agent runs. */
const cache = new Map<string, Buffer>()

async function asset (file: string): Promise<Buffer> {
  let body = cache.get(file)
  if (body === undefined) {
    body = await readFile(new URL(`./dashboard/${file}`, import.meta.url))
    cache.set(file, body)
  }
  return body
}

/** Answers one of the dashboard's paths; false when `path` is none of them. */
export async function serveDashboard (path: string, res: ServerResponse): Promise<boolean> {
  const found = ASSETS[path]
  if (found === undefined) return false
  const body = await asset(found.file)
  res.writeHead(200, {
    'content-type': found.type,
    'content-length': body.length,
    'cache-control': 'no-store',
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer'
  })
  res.end(body)
  return true
}
