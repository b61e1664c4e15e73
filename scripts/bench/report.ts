/** Markdown and number formatting for the benchmark report. */

export function table (header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

export function int (n: number): string {
  return Math.round(n).toLocaleString('en-US')
}

export function fixed (n: number, digits = 2): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** Rows (or anything) per second. */
export function rate (count: number, ms: number): string {
  return `${int(count / (ms / 1000))}/s`
}

export function seconds (ms: number): string {
  return `${fixed(ms / 1000, 2)} s`
}

export function bytes (n: number): string {
  const sign = n < 0 ? '-' : ''
  const abs = Math.abs(n)
  if (abs < 1024) return `${sign}${abs} B`
  if (abs < 1024 ** 2) return `${sign}${fixed(abs / 1024, 1)} KiB`
  if (abs < 1024 ** 3) return `${sign}${fixed(abs / 1024 ** 2, 1)} MiB`
  return `${sign}${fixed(abs / 1024 ** 3, 2)} GiB`
}

export function passFail (ok: boolean): string {
  return ok ? 'pass' : '**FAIL**'
}

/** Progress goes to stderr, so stdout carries the report only. */
export function progress (message: string): void {
  process.stderr.write(`[bench] ${message}\n`)
}
