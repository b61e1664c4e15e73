/**
 * What a person watches while a scenario runs. On a terminal: a table of the
 * regions redrawn in place (state, source, rows against the source's,
 * repaired rows, traffic, memory), with the timeline's events scrolling
 * above it. In a pipe or a log: the events, and one line of states a second.
 */
import type { Sample } from './observer.ts'

export interface ProgressOut { write: (text: string) => unknown, isTTY?: boolean }

const n = (v: number): string => Math.round(v).toLocaleString('en-US')
const mib = (b: number | undefined): string => (b === undefined ? '-' : `${Math.round(b / 1048576)} MiB`)
const bytes = (b: number): string => (b < 10_240 ? `${b} B` : b < 10_485_760 ? `${(b / 1024).toFixed(0)} KiB` : `${(b / 1048576).toFixed(1)} MiB`)

export class ProgressView {
  private drawn = 0
  private lastLine = 0
  private readonly tty: boolean
  private last: Sample | undefined
  private finished = false

  constructor (private readonly out: ProgressOut, private readonly t0: () => number | undefined, private readonly primary: string) {
    this.tty = out.isTTY === true
  }

  private clock (at = Date.now()): string {
    const t0 = this.t0()
    return t0 === undefined ? ' setup ' : `${((at - t0) / 1000).toFixed(1).padStart(6)}s`
  }

  /** A timeline event ("kill -9 eu-west"), above the table. */
  event (line: string): void {
    this.clear()
    this.out.write(`[${this.clock()}] ${line}\n`)
    this.draw()
  }

  sample (s: Sample): void {
    if (this.finished) return
    this.last = s
    if (this.tty) { this.clear(); this.draw(); return }
    if (s.at - this.lastLine < 1000) return
    this.lastLine = s.at
    const parts = Object.entries(s.regions).map(([region, r]) => {
      const states = Object.values(r.datasets).map(d => d.state === 'indexing' ? `indexing ${n(d.rowsIndexed ?? 0)}` : d.state)
      const repaired = Object.values(r.datasets).reduce((x, d) => x + d.counters.rowsUpserted + d.counters.rowsDeleted, 0)
      return `${region} ${[...new Set(states)].join('/')}${repaired > 0 ? ` ${n(repaired)} fixed` : ''}`
    })
    this.out.write(`[${this.clock(s.at)}] ${parts.join(' | ')}\n`)
  }

  private rows (): string[] {
    const s = this.last
    if (s === undefined) return []
    const head = `${'region'.padEnd(12)} ${'dataset'.padEnd(10)} ${'state'.padEnd(12)} ${'source'.padEnd(10)} ${'rows'.padStart(11)} ${'Δ source'.padStart(9)} ${'fixed'.padStart(9)} ${'sent/recv'.padStart(21)} ${'rss'.padStart(8)}`
    const lines = [head]
    for (const [region, r] of Object.entries(s.regions)) {
      for (const [dataset, d] of Object.entries(r.datasets)) {
        const sot = s.regions[this.primary]?.datasets[dataset]
        const delta = d.count === undefined || sot?.count === undefined ? '' : String(d.count - sot.count)
        const state = d.state === 'indexing' ? `idx ${n(d.rowsIndexed ?? 0)}` : d.state
        lines.push(`${region.padEnd(12)} ${dataset.padEnd(10)} ${state.padEnd(12)} ${(d.source ?? '-').padEnd(10)} ${(d.count === undefined ? '' : n(d.count)).padStart(11)} ${delta.padStart(9)} ${n(d.counters.rowsUpserted + d.counters.rowsDeleted).padStart(9)} ${`${bytes(d.counters.bytesSent)} / ${bytes(d.counters.bytesReceived)}`.padStart(21)} ${mib(r.rssBytes).padStart(8)}`)
      }
    }
    return lines
  }

  private draw (): void {
    if (!this.tty || this.finished) return
    const lines = this.rows()
    if (lines.length === 0) return
    this.out.write(`${lines.join('\n')}\n`)
    this.drawn = lines.length
  }

  private clear (): void {
    if (!this.tty || this.drawn === 0) return
    this.out.write(`\x1b[${this.drawn}A\x1b[0J`)
    this.drawn = 0
  }

  /** Leaves the last table on screen and stops redrawing; later events print below it. */
  done (): void { this.drawn = 0; this.finished = true }
}
