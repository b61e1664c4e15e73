/**
 * A progress line on a terminal for long work (the first full scan of a large
 * store, a deep validation pass). Drawn only when the stream is a terminal:
 * in a pipe, a log file or under a supervisor nothing is written (the JSON
 * logs say the same). Redrawn at most every REDRAW_MS, on one line (\r).
 *
 *   indexing orders  [##########··········]  52%  520,000/1,000,000 rows  183,000 rows/s  eta 3 s
 *   indexing orders  520,000 rows  183,000 rows/s          (total unknown)
 */

/** Redraws per second are capped: a redraw per batch would cost more than the work on a fast scan. */
const REDRAW_MS = 100
const BAR_WIDTH = 24

export interface ProgressStream {
  readonly isTTY?: boolean
  readonly columns?: number
  write: (text: string) => unknown
}

export interface Progress {
  /** Work done so far (rows), and the total when it became known. */
  update: (done: number, total?: number) => void
  /** Draws the final state and ends the line. */
  done: (note?: string) => void
}

const noProgress: Progress = { update () {}, done () {} }
const n = (v: number): string => Math.round(v).toLocaleString('en-US')

export function createProgress (label: string, options: { stream?: ProgressStream, total?: number, unit?: string, now?: () => number } = {}): Progress {
  const stream = options.stream ?? process.stderr
  if (stream.isTTY !== true) return noProgress
  const now = options.now ?? (() => performance.now())
  const unit = options.unit ?? 'rows'
  const started = now()
  let total = options.total
  let lastDraw = -Infinity
  let last = 0
  let finished = false

  const line = (done: number): string => {
    const seconds = Math.max(0.001, (now() - started) / 1000)
    const rate = done / seconds
    const parts = [label]
    if (total !== undefined && total > 0) {
      const share = Math.min(1, done / total)
      const filled = Math.round(share * BAR_WIDTH)
      parts.push(`[${'#'.repeat(filled)}${'·'.repeat(BAR_WIDTH - filled)}]`, `${String(Math.floor(share * 100)).padStart(3)}%`, `${n(done)}/${n(total)} ${unit}`)
      if (rate > 0 && done < total) parts.push(`eta ${Math.ceil((total - done) / rate)} s`)
    } else {
      parts.push(`${n(done)} ${unit}`)
    }
    parts.push(`${n(rate)} ${unit}/s`)
    const text = parts.join('  ')
    const width = stream.columns ?? 100
    return text.length >= width ? text.slice(0, width - 1) : text.padEnd(width - 1)
  }

  return {
    update (done, newTotal) {
      if (finished) return
      if (newTotal !== undefined) total = newTotal
      last = done
      const t = now()
      if (t - lastDraw < REDRAW_MS) return
      lastDraw = t
      stream.write(`\r${line(done)}`)
    },
    done (note) {
      if (finished) return
      finished = true
      stream.write(`\r${line(last)}${note === undefined ? '' : `  ${note}`}\n`)
    }
  }
}
