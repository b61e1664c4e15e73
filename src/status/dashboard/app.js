// The converge dashboard. Plain browser JavaScript, no build step: it polls the
// status port's JSON endpoints and renders them. Every value from the agent is
// put into the page as text (textContent), never as HTML: row values come from
// replicas and are not to be trusted as markup.
'use strict'

const REFRESH_MS = Number(new URLSearchParams(location.search).get('refresh') ?? 2000)
const TOKEN_KEY = 'converge.token'
const COLORS = ['#1565c0', '#ef6c00', '#2e7d32', '#6a1b9a', '#c62828', '#00838f', '#5d4037', '#9e9d24']
const SVG = 'http://www.w3.org/2000/svg'

let token = sessionStorage.getItem(TOKEN_KEY) ?? ''
let me = null // { name, role } once the token is known good
const reviewNodes = new Map() // review id -> element, kept while pending so a typed reason survives a refresh
const fixRows = new Map() // fix id -> row

const $ = (sel) => document.querySelector(sel)

function el (tag, attrs = {}, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v)
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, String(v))
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c === undefined || c === null ? '' : String(c)))
  return e
}

function say (text, isError = false) {
  const m = $('#message')
  m.textContent = text
  m.className = isError ? 'error' : ''
}

async function api (path, init = {}) {
  const headers = { accept: 'application/json' }
  if (token !== '') headers.authorization = `Bearer ${token}`
  if (init.body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(path, { method: init.method ?? 'GET', headers, body: init.body === undefined ? undefined : JSON.stringify(init.body) })
  let body = null
  try { body = await res.json() } catch { body = null }
  return { status: res.status, ok: res.ok, body }
}

const errorText = (r) => r.body?.error ? `${r.body.error.message} [${r.body.error.code}]` : `HTTP ${r.status}`
const ago = (ms) => ms === null || ms === undefined ? '-' : `${Math.max(0, Math.round((Date.now() - ms) / 1000))} s ago`
const shortId = (id) => typeof id === 'string' && id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : (id ?? '-')
const show = (v) => v === null || v === undefined ? '∅' : typeof v === 'string' ? v : JSON.stringify(v)
const can = (role) => me !== null && ({ viewer: 0, approver: 1, admin: 2 }[me.role] >= { viewer: 0, approver: 1, admin: 2 }[role])

function replaceBody (table, rows) {
  const tbody = table.tBodies[0]
  tbody.replaceChildren(...rows)
}

// status: header, datasets, peers

function renderStatus (s, drift, pending) {
  $('#agent').textContent = `${s.region} · ${s.cluster} · ${shortId(s.peerId)}`
  const health = $('#health')
  health.textContent = s.draining ? 'draining' : s.ready ? 'ready' : 'starting'
  health.className = `badge ${s.draining ? 'warn' : s.ready ? 'ok' : 'bad'}`
  replaceBody($('#datasets'), s.datasets.map(d => {
    const points = drift[d.name] ?? []
    const last = points.length > 0 ? points[points.length - 1][1] : null
    return el('tr', { 'data-dataset': d.name },
      el('td', {}, d.name),
      el('td', { class: `state state-${d.state}` }, d.state),
      el('td', {}, d.sourceOfTruth ?? '-'),
      el('td', {}, d.root ? d.root.count : (d.rowsIndexed ?? '-')),
      el('td', { class: 'drift' }, last ?? '-'),
      el('td', {}, ago(d.lastSyncAt)),
      el('td', {}, ago(d.lastFixAt)),
      el('td', { class: 'pending' }, pending === null ? '-' : pending.filter(r => r.dataset === d.name).length),
      el('td', { class: 'error' }, d.lastError ?? ''))
  }))
  replaceBody($('#peers'), s.peers.map(p => el('tr', { 'data-region': p.region },
    el('td', {}, p.region), el('td', {}, el('code', {}, shortId(p.peerId))),
    el('td', { class: p.connected ? 'state-in-sync' : 'state-error' }, p.connected ? 'yes' : 'no'),
    el('td', {}, p.lagMs === null ? 'never' : `${Math.round(p.lagMs / 1000)} s ago`))))
}

// the drift chart: one line per dataset, rows apart over time

function renderChart (drift) {
  const svg = $('#drift-chart')
  const names = Object.keys(drift).sort()
  const all = names.flatMap(n => drift[n])
  svg.replaceChildren()
  $('#legend').replaceChildren(...names.map((n, i) => el('li', {}, el('span', { class: 'swatch', style: undefined }), n)))
  // the swatch colour is set through the DOM, not a style attribute (the page's policy allows no inline style)
  names.forEach((n, i) => { $('#legend').children[i].firstChild.style.background = COLORS[i % COLORS.length] })
  if (all.length === 0) return
  const W = 800; const H = 200; const pad = 14
  const t1 = Date.now(); const t0 = Math.min(...all.map(p => p[0]), t1 - 60_000)
  const max = Math.max(1, ...all.map(p => p[1]))
  const x = (t) => pad + (W - 2 * pad) * (t - t0) / Math.max(1, t1 - t0)
  const y = (v) => H - pad - (H - 2 * pad) * v / max
  const label = document.createElementNS(SVG, 'text')
  label.setAttribute('x', '4'); label.setAttribute('y', '12'); label.setAttribute('font-size', '11')
  label.textContent = `${max} rows`
  svg.append(label)
  names.forEach((n, i) => {
    const points = drift[n]
    // a step line: the value holds until the next point, and up to now
    const coords = []
    points.forEach((p, j) => {
      if (j > 0) coords.push(`${x(p[0]).toFixed(1)},${y(points[j - 1][1]).toFixed(1)}`)
      coords.push(`${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`)
    })
    coords.push(`${x(t1).toFixed(1)},${y(points[points.length - 1][1]).toFixed(1)}`)
    const line = document.createElementNS(SVG, 'polyline')
    line.setAttribute('points', coords.join(' '))
    line.setAttribute('fill', 'none')
    line.setAttribute('stroke', COLORS[i % COLORS.length])
    line.setAttribute('stroke-width', '2')
    line.setAttribute('data-dataset', n)
    line.setAttribute('data-max', String(Math.max(...points.map(p => p[1]))))
    line.setAttribute('data-last', String(points[points.length - 1][1]))
    const title = document.createElementNS(SVG, 'title')
    title.textContent = `${n}: ${points[points.length - 1][1]} rows apart now, at most ${Math.max(...points.map(p => p[1]))}`
    line.append(title)
    svg.append(line)
  })
}

// reviews: each with its diff, approve and reject

function diffTable (diff) {
  const rows = [...diff.upserts.map(u => ({ op: u.now === null ? 'insert' : 'update', ...u })), ...diff.deletes.map(d => ({ op: 'delete', ...d }))]
  const table = el('table', { class: 'diff' }, el('thead', {}, el('tr', {}, el('th', {}, 'op'), el('th', {}, 'key'), el('th', {}, 'column'), el('th', {}, 'now'), el('th', {}, 'after'))))
  const body = el('tbody')
  for (const r of rows) {
    const cols = [...new Set([...Object.keys(r.now ?? {}), ...Object.keys(r.after ?? {})])]
    const changed = cols.filter(c => show(r.now?.[c]) !== show(r.after?.[c]))
    const shown = changed.length > 0 ? changed : cols.slice(0, 1)
    shown.forEach((c, i) => body.append(el('tr', { 'data-op': r.op },
      el('td', {}, i === 0 ? r.op : ''), el('td', {}, i === 0 ? show(r.key) : ''), el('td', {}, c),
      el('td', { class: 'changed' }, r.now === null ? '∅' : show(r.now[c])), el('td', { class: 'changed' }, r.after === null ? '∅' : show(r.after[c])))))
  }
  table.append(body)
  if (diff.truncated) table.append(el('caption', {}, 'the first rows only'))
  return table
}

async function decide (review, verb, box) {
  const reason = box.querySelector('input.reason').value.trim()
  if (reason === '') { say('give a reason first', true); return }
  for (const b of box.querySelectorAll('button')) b.disabled = true
  const r = await api(`/reviews/${encodeURIComponent(review.id)}/${verb}`, { method: 'POST', body: { reason } })
  if (r.ok) {
    say(`review ${shortId(review.id)} ${r.body.state}${r.body.fixIds?.length ? `: fix ${r.body.fixIds.map(shortId).join(', ')}` : ''}`)
    box.remove(); reviewNodes.delete(review.id)
    await refresh()
  } else {
    say(`${verb} refused: ${errorText(r)}`, true)
    for (const b of box.querySelectorAll('button')) b.disabled = false
  }
}

async function renderReviews (pending) {
  const holder = $('#reviews')
  if (pending === null) return
  if (pending.length === 0 && reviewNodes.size === 0) { holder.replaceChildren(el('p', { class: 'muted' }, 'none')); return }
  holder.querySelector('p.muted')?.remove()
  const open = new Set(pending.map(r => r.id))
  for (const [id, node] of reviewNodes) if (!open.has(id)) { node.remove(); reviewNodes.delete(id) }
  for (const r of pending) {
    if (reviewNodes.has(r.id)) continue
    const detail = await api(`/reviews/${encodeURIComponent(r.id)}`)
    if (!detail.ok) continue
    const box = el('div', { class: 'review', 'data-review': r.id },
      el('div', {}, el('strong', {}, r.dataset), ` · ${r.upserts} to write, ${r.deletes} to delete · from ${r.sourceRegion} · `, el('code', {}, shortId(r.id))),
      el('div', { class: 'muted' }, r.reasons.join('; ')),
      diffTable(detail.body.diff))
    if (can('approver')) {
      const actions = el('div', { class: 'actions' },
        el('input', { class: 'reason', placeholder: 'reason (recorded in the audit)', maxlength: 2000 }),
        el('button', { class: 'approve', type: 'button', onclick: () => decide(r, 'approve', box) }, 'approve'),
        el('button', { class: 'reject', type: 'button', onclick: () => decide(r, 'reject', box) }, 'reject'))
      box.append(actions)
    }
    reviewNodes.set(r.id, box)
    holder.append(box)
  }
}

// recent fixes, newest first, with a rollback button for admins

async function rollback (fix, row) {
  const reason = row.querySelector('input.reason').value.trim()
  if (reason === '') { say('give a reason first', true); return }
  const r = await api(`/fixes/${encodeURIComponent(fix.fixId)}/rollback`, { method: 'POST', body: { reason } })
  if (r.ok) {
    // rows a trigger of the store changed as they were written back: the audit records them as stored
    const otherwise = r.body.storedOtherwise > 0 ? `; ${r.body.storedOtherwise} stored otherwise than their before-images` : ''
    say(`fix ${shortId(fix.fixId)} rolled back as ${shortId(r.body.fixId)} (${r.body.rows} rows${otherwise})`)
    await refresh()
  } else say(`rollback refused: ${errorText(r)}`, true)
}

function renderFixes (entries) {
  const tbody = $('#fixes').tBodies[0]
  for (const e of [...entries].reverse()) {
    if (fixRows.has(e.fixId)) continue
    const rows = e.before?.length ?? ''
    const row = el('tr', { 'data-fix': e.fixId },
      el('td', {}, new Date(e.at).toLocaleTimeString()), el('td', {}, e.dataset), el('td', {}, el('code', {}, shortId(e.fixId))),
      el('td', {}, e.by ?? ''), el('td', {}, rows), el('td', { class: 'muted' }, e.rollbackOf ? `rollback of ${shortId(e.rollbackOf)}` : e.reviewId ? 'from a review' : ''),
      el('td'))
    if (can('admin') && !e.rollbackOf) {
      row.lastChild.append(el('input', { class: 'reason', placeholder: 'reason', size: 14 }), el('button', { class: 'rollback', type: 'button', onclick: () => rollback(e, row) }, 'roll back'))
    }
    fixRows.set(e.fixId, row)
    tbody.prepend(row)
  }
}

async function loadCluster () {
  const r = await api('/cluster')
  if (!r.ok) { say(`cluster view refused: ${errorText(r)}`, true); return }
  const table = $('#cluster')
  table.hidden = false
  replaceBody(table, r.body.members.map(m => el('tr', { 'data-region': m.region ?? '' },
    el('td', {}, `${m.region ?? '?'}${m.self ? ' (this agent)' : ''}`),
    el('td', { class: m.ok ? 'state-in-sync' : 'state-error' }, m.ok ? `yes, ${m.ms} ms` : `no: ${m.error?.message ?? ''}`),
    el('td', {}, m.report ? (m.report.ready ? 'yes' : 'no') : '-'),
    el('td', {}, m.report ? m.report.datasets.map(d => `${d.name}: ${d.state}`).join(', ') : '-'))))
}

let refreshing = false
async function refresh () {
  if (refreshing) return
  refreshing = true
  try {
    const [status, drift] = await Promise.all([api('/status'), api('/drift')])
    if (!status.ok) { say(`status: ${errorText(status)}`, true); return }
    let pending = null
    if (token !== '' && me === null) {
      const who = await api('/whoami')
      if (who.ok) { me = who.body; $('#whoami').textContent = `${me.name} (${me.role})`; reviewNodes.forEach(n => n.remove()); reviewNodes.clear(); fixRows.forEach(n => n.remove()); fixRows.clear() } else { $('#whoami').textContent = errorText(who) }
    }
    if (me !== null) {
      const [reviews, fixes] = await Promise.all([api('/reviews?state=pending'), api('/audit?kind=commit&order=desc&limit=20')])
      if (reviews.ok) pending = reviews.body.reviews
      if (fixes.ok) renderFixes(fixes.body.entries)
    }
    renderStatus(status.body, drift.ok ? drift.body.datasets : {}, pending)
    renderChart(drift.ok ? drift.body.datasets : {})
    await renderReviews(pending)
    document.body.dataset.loaded = 'true'
  } catch (err) {
    say(`cannot reach the agent: ${err.message}`, true)
  } finally {
    refreshing = false
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('#token').value = token
  $('#login').addEventListener('submit', (evt) => {
    evt.preventDefault()
    token = $('#token').value.trim()
    sessionStorage.setItem(TOKEN_KEY, token)
    me = null
    $('#whoami').textContent = ''
    void refresh()
  })
  $('#load-cluster').addEventListener('click', () => { void loadCluster() })
  void refresh()
  setInterval(() => { void refresh() }, REFRESH_MS)
})
