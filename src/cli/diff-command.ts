import { readFile } from 'node:fs/promises'
import { resolveSchema } from '../config/resolve-schema.ts'
import { loadConfig } from '../config/load.ts'
import { parseYamlStrict } from '../config/yaml.ts'
import { datasetSchemaSchema } from '../config/schema.ts'
import { ConfigError } from '../errors.ts'
import { RowCodec } from '../digest/row-codec.ts'
import type { DatasetSchema } from '../digest/schema.ts'
import { createStore, parseStoreSpec } from '../stores/open-store.ts'
import { compareStores } from '../sync/compare.ts'

export interface DiffOptions {
  left: string
  right: string
  schema?: string
  config?: string
  dataset?: string
  json?: boolean
  limit: number
}

async function readSchema (opts: DiffOptions): Promise<DatasetSchema> {
  if (opts.config !== undefined) {
    const config = await loadConfig(opts.config)
    const dataset = opts.dataset === undefined && config.datasets.length === 1 ? config.datasets[0] : config.datasets.find(d => d.name === opts.dataset)
    if (dataset === undefined) throw new ConfigError(`${opts.config} has no dataset ${opts.dataset === undefined ? '(name one with --dataset)' : `"${opts.dataset}"`}`)
    return await resolveSchema(dataset)
  }
  if (opts.schema === undefined) throw new ConfigError('give the dataset schema with --schema FILE, or --config FILE [--dataset NAME]')
  let value: unknown
  let text: string
  try { text = await readFile(opts.schema, 'utf8') } catch (err) { throw new ConfigError(`cannot read schema file ${opts.schema}: ${(err as Error).message}`) }
  value = parseYamlStrict(text, `schema file ${opts.schema}`)
  const parsed = datasetSchemaSchema.safeParse(value)
  if (!parsed.success) throw new ConfigError(`schema file ${opts.schema} is invalid:\n${parsed.error.issues.map(i => `  ${i.path.join('.') || '(top level)'}: ${i.message}`).join('\n')}`)
  return parsed.data
}

function rowJson (codec: RowCodec, row: Uint8Array): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [name, v] of Object.entries(codec.decodeRow(row))) {
    out[name] = v instanceof Date ? v.toISOString() : typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v
  }
  return out
}

/** Compares two stores once and prints the differing rows; resolves to whether they differ. */
export async function diffCommand (opts: DiffOptions, out: NodeJS.WritableStream = process.stdout): Promise<boolean> {
  const codec = new RowCodec(await readSchema(opts))
  const left = await createStore(parseStoreSpec(opts.left), codec)
  const right = await createStore(parseStoreSpec(opts.right), codec)
  // read-only: a diff sets up no change capture and leaves the change logs that agents follow alone
  await left.open({ readOnly: true })
  try {
    await right.open({ readOnly: true })
    try {
      const diff = await compareStores(left, right, codec)
      const total = diff.onlyLeft.length + diff.onlyRight.length + diff.changed.length
      if (opts.json === true) {
        out.write(JSON.stringify({
          left: opts.left.replace(/\/\/[^@/]*@/, '//'), // never echo credentials
          right: opts.right.replace(/\/\/[^@/]*@/, '//'),
          counts: { onlyLeft: diff.onlyLeft.length, onlyRight: diff.onlyRight.length, changed: diff.changed.length },
          onlyLeft: diff.onlyLeft.slice(0, opts.limit).map(r => rowJson(codec, r)),
          onlyRight: diff.onlyRight.slice(0, opts.limit).map(r => rowJson(codec, r)),
          changed: diff.changed.slice(0, opts.limit).map(c => ({ left: rowJson(codec, c.left), right: rowJson(codec, c.right) }))
        }, null, 2) + '\n')
        return total > 0
      }
      // +: the left side's row, -: the right side's (what it takes to make right equal left)
      let printed = 0
      const line = (text: string): void => { if (printed++ < opts.limit) out.write(text + '\n') }
      for (const c of diff.changed) { line(`- ${JSON.stringify(rowJson(codec, c.right))}`); line(`+ ${JSON.stringify(rowJson(codec, c.left))}`) }
      for (const r of diff.onlyLeft) line(`+ ${JSON.stringify(rowJson(codec, r))}`)
      for (const r of diff.onlyRight) line(`- ${JSON.stringify(rowJson(codec, r))}`)
      if (printed > opts.limit) out.write(`… ${printed - opts.limit} more lines (raise --limit)\n`)
      out.write(total === 0
        ? 'no differences\n'
        : `${total} rows differ: ${diff.changed.length} changed, ${diff.onlyLeft.length} only in left, ${diff.onlyRight.length} only in right\n`)
      return total > 0
    } finally {
      await right.close()
    }
  } finally {
    await left.close()
  }
}
