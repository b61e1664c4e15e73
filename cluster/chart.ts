/**
 * The run drawn for a person: drifted rows outstanding per region over time
 * (a step line each), fault windows shaded and labelled, the live load's
 * window, when the timeline went quiet and when the cluster converged; under
 * it a strip per region of its state at each poll. Plain SVG, no script,
 * opens in any browser; report.html wraps it with the figures and checks.
 */
import { faultWindow, overridesText, roundsText, type RunReport } from './report.ts'

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f']
const STATE_COLORS: Record<string, string> = {
  source: '#4c78a8', 'in-sync': '#54a24b', drifted: '#f58518', syncing: '#72b7b2', held: '#b279a2', error: '#e45756',
  'no-source': '#9d755d', quarantined: '#ff9da6', indexing: '#bab0ac', starting: '#d8d8d8', down: '#555555'
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
const fmt = (v: number): string => (Math.abs(v) >= 10_000 ? `${Math.round(v / 1000)}k` : String(Math.round(v)))

/** A round axis maximum at or above v, and a round step that divides it. */
function niceAxis (v: number): { max: number, step: number } {
  if (v <= 1) return { max: 1, step: 0.25 }
  const p = 10 ** Math.floor(Math.log10(v))
  for (const [m, step] of [[1, 0.2], [2, 0.5], [5, 1], [10, 2]] as const) if (m * p >= v) return { max: m * p, step: step * p }
  return { max: 10 * p, step: 2 * p }
}

export function renderChart (report: RunReport): string {
  const W = 960; const left = 70; const right = 150; const top = 40; const plotH = 300
  const regions = Object.keys(report.series.regions)
  const stripH = 12; const stripGap = 4
  const stripsTop = top + plotH + 40
  const H = stripsTop + regions.length * (stripH + stripGap) + 70
  const t = report.series.t
  const tMax = Math.max(1000, t.at(-1) ?? 0, report.convergence.convergedAtMs ?? 0)
  const tMin = Math.min(0, -report.startupMs, t[0] ?? 0)
  const x = (ms: number): number => left + (ms - tMin) / (tMax - tMin) * (W - left - right)
  const yAxis = niceAxis(Math.max(1, ...regions.flatMap(r => report.series.regions[r]!.outstanding.map(([, v]) => v))))
  const yMax = yAxis.max
  const y = (v: number): number => top + plotH - v / yMax * plotH
  const parts: string[] = []
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="11">`)
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`)
  parts.push(`<text x="${left}" y="20" font-size="14" font-weight="bold">${esc(report.scenario.name)}: drifted rows outstanding per region</text>`)

  // fault windows and the load, behind the lines
  report.faults.forEach((f, i) => {
    if (!f.fired || f.startMs === undefined) return
    const x0 = x(f.startMs); const x1 = Math.max(x0 + 2, x(f.endMs ?? tMax))
    parts.push(`<rect x="${x0.toFixed(1)}" y="${top}" width="${(x1 - x0).toFixed(1)}" height="${plotH}" fill="#e45756" fill-opacity="0.10"/>`)
    parts.push(`<text x="${(x0 + 3).toFixed(1)}" y="${top + 12 + (i % 4) * 12}" fill="#b03030">${esc(`${f.kind} ${f.target}`)}</text>`)
  })
  const loadWindow = report.load?.windowMs
  if (loadWindow !== undefined) {
    const x0 = x(loadWindow[0]); const x1 = x(loadWindow[1])
    parts.push(`<rect x="${x0.toFixed(1)}" y="${top + plotH - 6}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="6" fill="#4c78a8" fill-opacity="0.5"/><text x="${(x0 + 3).toFixed(1)}" y="${top + plotH - 10}" fill="#4c78a8">live load</text>`)
  }
  // axes and grid
  for (let v = 0; v <= yMax + 1e-9; v += yAxis.step) {
    parts.push(`<line x1="${left}" x2="${W - right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#eee"/><text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${fmt(v)}</text>`)
  }
  const step = niceAxis((tMax - tMin) / 10).max
  for (let ms = Math.ceil(tMin / step) * step; ms <= tMax; ms += step) parts.push(`<line x1="${x(ms).toFixed(1)}" x2="${x(ms).toFixed(1)}" y1="${top + plotH}" y2="${top + plotH + 4}" stroke="#333"/><text x="${x(ms).toFixed(1)}" y="${top + plotH + 16}" text-anchor="middle">${(ms / 1000).toFixed(step < 1000 ? 1 : 0)} s</text>`)
  parts.push(`<line x1="${left}" x2="${W - right}" y1="${top + plotH}" y2="${top + plotH}" stroke="#333"/><line x1="${left}" x2="${left}" y1="${top}" y2="${top + plotH}" stroke="#333"/>`)
  parts.push(`<text x="${(left + W - right) / 2}" y="${top + plotH + 30}" text-anchor="middle" fill="#555">time since t0 (all agents ready)</text>`)
  parts.push(`<text transform="translate(16 ${top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#555">rows drifted, not yet repaired</text>`)
  const marker = (ms: number | null, label: string, color: string, row: number): void => {
    if (ms === null) return
    parts.push(`<line x1="${x(ms).toFixed(1)}" x2="${x(ms).toFixed(1)}" y1="${top}" y2="${top + plotH}" stroke="${color}" stroke-dasharray="4 3"/><text x="${(x(ms) + 3).toFixed(1)}" y="${top + plotH - 6 - row * 12}" fill="${color}">${label}</text>`)
  }
  marker(-report.startupMs, 'agents launched', '#888', 2)
  marker(0, 't0: all ready', '#888', 3)
  marker(report.convergence.quietAtMs, 'timeline quiet', '#888', 1)
  marker(report.convergence.convergedAtMs, 'converged', '#2a7a2a', 0)

  // one step line per region
  regions.forEach((r, i) => {
    const pts = report.series.regions[r]!.outstanding
    const color = COLORS[i % COLORS.length]!
    if (pts.length > 0) {
      let d = `M${x(tMin).toFixed(1)},${y(0).toFixed(1)}`
      for (const [ms, v] of pts) d += ` H${x(Math.max(tMin, ms)).toFixed(1)} V${y(v).toFixed(1)}`
      d += ` H${x(tMax).toFixed(1)}`
      parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.8"/>`)
    }
    parts.push(`<rect x="${W - right + 12}" y="${top + i * 16}" width="10" height="10" fill="${color}"/><text x="${W - right + 26}" y="${top + i * 16 + 9}">${esc(r)}</text>`)
  })

  // state strips
  parts.push(`<text x="${left}" y="${stripsTop - 8}" fill="#555">state at each poll</text>`)
  regions.forEach((r, i) => {
    const yy = stripsTop + i * (stripH + stripGap)
    parts.push(`<text x="${left - 6}" y="${yy + stripH - 2}" text-anchor="end">${esc(r)}</text>`)
    const states = Object.values(report.series.regions[r]!.states)[0] ?? []
    let start = 0
    for (let k = 1; k <= states.length; k++) {
      if (k < states.length && states[k] === states[start]) continue
      const x0 = x(t[start] ?? 0); const x1 = x(k < states.length ? t[k]! : (t.at(-1) ?? 0))
      parts.push(`<rect x="${x0.toFixed(1)}" y="${yy}" width="${Math.max(0.5, x1 - x0).toFixed(1)}" height="${stripH}" fill="${STATE_COLORS[states[start]!] ?? '#ccc'}"><title>${esc(`${r}: ${states[start]!}`)}</title></rect>`)
      start = k
    }
  })
  const legendY = stripsTop + regions.length * (stripH + stripGap) + 20
  let lx = left
  for (const [state, color] of Object.entries(STATE_COLORS)) {
    parts.push(`<rect x="${lx}" y="${legendY}" width="10" height="10" fill="${color}"/><text x="${lx + 14}" y="${legendY + 9}">${state}</text>`)
    lx += 24 + state.length * 6
  }
  parts.push('</svg>')
  return parts.join('\n')
}

const msCell = (p: { p50: number, p95: number, max: number } | undefined): string => (p === undefined ? '–' : `${p.p50} / ${p.p95} / ${p.max}`)

export function renderHtml (report: RunReport, svg: string): string {
  const rows = Object.entries(report.regions).map(([name, r]) => `<tr><td>${esc(name)}</td><td>${r.role}</td><td>${r.store}</td><td>${r.processes}</td><td>${r.injected.updated}/${r.injected.inserted}/${r.injected.deleted}</td><td>${msCell(r.detectMs)}</td><td>${msCell(r.remediateMs)}</td><td>${r.rowsRepaired.total.toLocaleString('en-US')}</td><td>${r.fixes}</td><td>${r.roundTrips}</td><td>${r.bytesSent.toLocaleString('en-US')} / ${r.bytesReceived.toLocaleString('en-US')}</td><td>${r.peakRssMiB ?? '–'} MiB</td></tr>`).join('\n')
  const checks = report.checks.map(c => `<tr class="${c.passed ? 'ok' : 'fail'}"><td>${c.passed ? 'ok' : 'FAIL'}</td><td>${esc(c.name)}</td><td>${esc(c.detail)}</td></tr>`).join('\n')
  const faults = report.faults.map(f => `<tr><td>${f.kind}</td><td>${esc(f.target)}</td><td>${faultWindow(f)}</td><td><code>${esc(JSON.stringify(f.observed))}</code></td></tr>`).join('\n')
  const c = report.convergence
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>converge: ${esc(report.scenario.name)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 24px; color: #222 }
table { border-collapse: collapse; margin: 12px 0 24px } td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: left; font-size: 13px }
th { background: #f4f4f4 } tr.fail td { background: #fde8e8 } tr.ok td:first-child { color: #2a7a2a } tr.fail td:first-child { color: #b00; font-weight: bold }
.verdict { font-size: 20px; font-weight: bold } .passed { color: #2a7a2a } .failed { color: #b00 }
</style></head><body>
<h1>${esc(report.scenario.name)}</h1>
${report.scenario.description === undefined ? '' : `<p>${esc(report.scenario.description)}</p>`}
${report.scenario.overrides.length === 0 ? '' : `<p>Run with ${esc(overridesText(report.scenario.overrides))}: the description above is of the scenario as written.</p>`}
<p class="verdict ${report.passed ? 'passed' : 'failed'}">${report.passed ? 'PASSED' : 'FAILED'}</p>
<p>Started ${esc(report.startedAt)}; ${(report.durationMs / 1000).toFixed(1)} s in all; agents ready ${(report.startupMs / 1000).toFixed(1)} s after launch (t0).
${c.convergenceMs === null ? 'The cluster did <b>not</b> converge.' : `Converged ${(c.convergenceMs / 1000).toFixed(2)} s after the timeline went quiet (at ${(c.quietAtMs / 1000).toFixed(1)} s).`}
${c.rounds.length > 1 ? `Drift batches, each from its last commit until level again: ${esc(roundsText(c.rounds))}.` : ''}
Sources of truth: ${report.scenario.sourceOfTruth.map(esc).join(' → ')}. Datasets: ${report.scenario.datasets.map(d => `${esc(d.name)} (${d.rows.toLocaleString('en-US')} rows${d.partitions === undefined ? '' : `, ${d.partitions} partitions`})`).join(', ')}.</p>
${svg}
<h2>Regions</h2>
<table><tr><th>region</th><th>role</th><th>store</th><th>processes</th><th>drift upd/ins/del</th><th>detect ms p50/p95/max</th><th>remediate ms p50/p95/max</th><th>rows repaired</th><th>fixes</th><th>round trips</th><th>bytes sent / received</th><th>peak RSS</th></tr>
${rows}</table>
${report.load === undefined ? '' : `<h2>Live load</h2><p>${report.load.rowsWritten.toLocaleString('en-US')} rows written (${report.load.inserted} inserted, ${report.load.updated} updated, ${report.load.deleted} deleted) at ${report.load.achievedRowsPerSecond} rows/s; ${report.load.errors} write errors retried.</p>`}
${report.faults.length === 0 ? '' : `<h2>Faults</h2><table><tr><th>kind</th><th>target</th><th>when</th><th>observed</th></tr>${faults}</table>`}
<h2>Checks</h2>
<table><tr><th></th><th>check</th><th>detail</th></tr>
${checks}</table>
<p>The figures as JSON: <a href="report.json">report.json</a>. Agent logs: <code>logs/</code>.</p>
</body></html>
`
}
