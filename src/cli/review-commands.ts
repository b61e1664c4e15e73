/**
 * Governance from the command line, against a running agent's status port:
 * `converge reviews`, `review ID`, `approve ID`, `reject ID`, `rollback FIX`,
 * `reconcile DATASET`. The agent applies the same rules as on its port.
 */
import { Option, type Command } from 'commander'
import { callAgent, DEFAULT_STATUS_URL, type PortOptions } from './admin-client.ts'
import { table } from './table.ts'

interface ReviewSummary {
  id: string, dataset: string, partition: string | null, state: string, createdAt: number, reasons: string[], upserts: number, deletes: number,
  decidedBy: string | null, decisionReason: string | null, fixIds: string[]
}
interface ReviewDetail extends ReviewSummary {
  diff: { upserts: Array<{ key: unknown, now: unknown, after: unknown }>, deletes: Array<{ key: unknown, now: unknown }>, truncated: boolean }
}

const out = (text: string): void => { process.stdout.write(text.endsWith('\n') ? text : `${text}\n`) }
const show = (v: unknown): string => JSON.stringify(v)

/**
 * --url and --token-file, shared by every command that talks to an agent.
 * Without `defaultUrl` --url has no default (a command that can also work
 * without an agent, like `audit`, must tell whether it was given).
 */
export function portOptions (cmd: Command, options: { defaultUrl?: boolean } = {}): Command {
  const url = new Option('-u, --url <url>', 'status port of the agent').env('CONVERGE_URL')
  return cmd
    .addOption(options.defaultUrl === false ? url : url.default(DEFAULT_STATUS_URL))
    .addOption(new Option('--token-file <file>', 'file holding a bearer token (default: the CONVERGE_TOKEN variable)').env('CONVERGE_TOKEN_FILE'))
}

/** What the status port answers for a rollback (RollbackReport, the fields said here). */
export interface RollbackOutcome { fixId: string, rollbackOf: string, rows: number, overwritten?: number, storedOtherwise?: number }

/** `converge rollback`'s line: the fixes, the rows, and what did not go back as it was. */
export function rollbackLine (r: RollbackOutcome): string {
  const notes = [
    (r.overwritten ?? 0) > 0 ? `${r.overwritten} of them changed since the fix and overwritten (--force)` : undefined,
    // the store's own doing (a trigger, a rounding column type): the audit records those rows as stored
    (r.storedOtherwise ?? 0) > 0 ? `${r.storedOtherwise} stored otherwise than their before-images: the store changed them as they were written` : undefined
  ].filter(n => n !== undefined)
  return `fix ${r.rollbackOf} rolled back by fix ${r.fixId} (${r.rows} rows${notes.length === 0 ? '' : `; ${notes.join('; ')}`})`
}

export function registerReviewCommands (program: Command): void {
  portOptions(program.command('reviews'))
    .description('list fixes held for review')
    .option('--dataset <name>', 'only this dataset')
    .addOption(new Option('--state <state>', 'pending, applied, rejected, superseded, refused or all').default('pending'))
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  CONVERGE_TOKEN=… converge reviews --url http://127.0.0.1:7600 --dataset orders')
    .action(async (opts: PortOptions & { dataset?: string, state: string, json?: boolean }) => {
      const q = new URLSearchParams()
      if (opts.dataset !== undefined) q.set('dataset', opts.dataset)
      if (opts.state !== 'all') q.set('state', opts.state)
      const { reviews } = await callAgent<{ reviews: ReviewSummary[] }>(opts, `/reviews?${q.toString()}`)
      if (opts.json === true) { out(JSON.stringify(reviews, null, 2)); return }
      if (reviews.length === 0) { out(`no ${opts.state === 'all' ? '' : `${opts.state} `}reviews`); return }
      out(table([
        ['ID', 'DATASET', 'PARTITION', 'STATE', 'ROWS', 'CREATED', 'WHY'],
        ...reviews.map(r => [r.id, r.dataset, r.partition ?? '-', r.state, `+${r.upserts} -${r.deletes}`, new Date(r.createdAt).toISOString(), r.reasons.join('; ')])
      ]))
    })

  portOptions(program.command('review'))
    .description('show one review and its diff: ~ changed, + added, - deleted')
    .argument('<id>', 'review id')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  converge review 1f0c…')
    .action(async (id: string, opts: PortOptions & { json?: boolean }) => {
      const r = await callAgent<ReviewDetail>(opts, `/reviews/${encodeURIComponent(id)}`)
      if (opts.json === true) { out(JSON.stringify(r, null, 2)); return }
      const lines = [`review ${r.id}  dataset ${r.dataset}${r.partition === null ? '' : `  partition ${r.partition}`}  ${r.state}`, `why: ${r.reasons.join('; ')}`, '']
      for (const u of r.diff.upserts) {
        if (u.now === null) lines.push(`+ ${show(u.key)} ${show(u.after)}`)
        else lines.push(`~ ${show(u.key)} ${show(u.now)}`, `  ${' '.repeat(show(u.key).length)} → ${show(u.after)}`)
      }
      for (const d of r.diff.deletes) lines.push(`- ${show(d.key)} ${show(d.now)}`)
      if (r.diff.truncated) lines.push(`… and more: +${r.upserts} -${r.deletes} rows in all`)
      out(lines.join('\n'))
    })

  for (const verb of ['approve', 'reject'] as const) {
    portOptions(program.command(verb))
      .description(verb === 'approve' ? 'approve a review: its rows are checked again, then the fix is applied' : 'reject a review: nothing is applied, and the same fix is not proposed again')
      .argument('<id>', 'review id')
      .requiredOption('--reason <text>', 'why, for the audit')
      .addHelpText('after', `\nExample:\n  converge ${verb} 1f0c… --reason "checked with the billing team"`)
      .action(async (id: string, opts: PortOptions & { reason: string }) => {
        const r = await callAgent<ReviewSummary>(opts, `/reviews/${encodeURIComponent(id)}/${verb}`, { method: 'POST', body: { reason: opts.reason } })
        out(verb === 'approve' ? `review ${r.id} approved by ${r.decidedBy ?? '?'}: applied as fix ${r.fixIds.join(', ')}` : `review ${r.id} rejected by ${r.decidedBy ?? '?'}`)
      })
  }

  portOptions(program.command('rollback'))
    .description("undo a fix: its before-images are written back as a new audited fix, and its keys are held for review")
    .argument('<fix>', 'fix id (see converge audit)')
    .requiredOption('--reason <text>', 'why, for the audit')
    .option('--force', 'roll back even though the rows changed since the fix')
    .addHelpText('after', '\nExample:\n  converge rollback 5b1e… --reason "restored the wrong snapshot"')
    .action(async (fix: string, opts: PortOptions & { reason: string, force?: boolean }) => {
      out(rollbackLine(await callAgent<RollbackOutcome>(opts, `/fixes/${encodeURIComponent(fix)}/rollback`, { method: 'POST', body: { reason: opts.reason, force: opts.force === true } })))
    })

  portOptions(program.command('reconcile'))
    .description('run one sync of a dataset against its source of truth now')
    .argument('<dataset>', 'dataset name')
    .addHelpText('after', '\nExample:\n  converge reconcile orders')
    .action(async (dataset: string, opts: PortOptions) => {
      const r = await callAgent<{ missing: number, changed: number, extra: number, fixes: number }>(opts, `/datasets/${encodeURIComponent(dataset)}/reconcile`, { method: 'POST', body: {}, timeoutMs: 120_000 })
      out(`${dataset}: ${r.missing} missing, ${r.changed} changed, ${r.extra} extra; ${r.fixes} fixes applied`)
    })
}
