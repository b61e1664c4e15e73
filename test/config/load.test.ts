import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { loadConfig, parseConfig } from '../../src/config/load.ts'
import { ConfigError } from '../../src/errors.ts'
import { ORDERS_SCHEMA } from '../../cluster/orders.ts'
import { tempDir } from '../helpers/agents.ts'

const valid = {
  cluster: 'prod',
  region: 'us-east',
  dataDir: './data',
  peers: [{ region: 'eu-west', address: '/ip4/127.0.0.1/tcp/7002' }],
  datasets: [{ name: 'orders', schema: ORDERS_SCHEMA, store: { kind: 'level', path: './orders' }, sourceOfTruth: ['us-east'] }]
}

function errorOf (value: unknown): ConfigError {
  try { parseConfig(value) } catch (err) { if (err instanceof ConfigError) return err; throw err }
  throw new Error('expected a ConfigError')
}

describe('config', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  beforeEach(async () => { dir = await tempDir() })
  afterEach(async () => { await dir.remove() })

  it('accepts a valid config and fills defaults', () => {
    const c = parseConfig(valid, '/srv/converge')
    expect(c.dataDir).toBe('/srv/converge/data')
    expect(c.keyFile).toBe('/srv/converge/data/peer.key')
    expect((c.datasets[0]!.store as { path: string }).path).toBe('/srv/converge/orders')
    expect(c.datasets[0]!.rule).toBe('restore')
    expect(c.gossip.intervalMs).toBe(5000)
    expect(c.index.pageCacheMiB).toBe(64)
    expect(c.listen).toEqual(['/ip4/127.0.0.1/tcp/0'])
  })

  it('names the bad field', () => {
    const e = errorOf({ ...valid, datasets: [{ ...valid.datasets[0], sourceOfTruth: ['mars'] }] })
    expect(e.code).toBe('CONVERGE_CONFIG_INVALID')
    expect(e.message).toMatch(/datasets\.0\.sourceOfTruth\.0: region "mars"/)
  })

  it('refuses a primary key that is not a column', () => {
    const e = errorOf({ ...valid, datasets: [{ ...valid.datasets[0], schema: { ...ORDERS_SCHEMA, primaryKey: ['id'] } }] })
    expect(e.message).toMatch(/datasets\.0\.schema\.primaryKey\.0: "id" is not a column/)
  })

  it('takes keepScale on a decimal column only, and not on a key column', () => {
    const withColumn = (column: Record<string, unknown>, primaryKey = ORDERS_SCHEMA.primaryKey): unknown => ({
      ...valid, datasets: [{ ...valid.datasets[0], schema: { ...ORDERS_SCHEMA, columns: [...ORDERS_SCHEMA.columns, column], primaryKey } }]
    })
    expect(() => parseConfig(withColumn({ name: 'price', type: 'decimal', keepScale: true }))).not.toThrow()
    expect(errorOf(withColumn({ name: 'label', type: 'string', keepScale: true })).message).toMatch(/datasets\.0\.schema\.columns\.9\.keepScale: only a decimal column keeps its scale/)
    expect(errorOf(withColumn({ name: 'price', type: 'decimal', keepScale: true }, ['order_id', 'price'])).message).toMatch(/datasets\.0\.schema\.columns\.9\.keepScale: a key column cannot keep its scale/)
  })

  it('takes keepText on a json column only, and not on a key column', () => {
    const withColumn = (column: Record<string, unknown>, primaryKey = ORDERS_SCHEMA.primaryKey): unknown => ({
      ...valid, datasets: [{ ...valid.datasets[0], schema: { ...ORDERS_SCHEMA, columns: [...ORDERS_SCHEMA.columns, column], primaryKey } }]
    })
    const schema = parseConfig(withColumn({ name: 'doc', type: 'json', keepText: true })).datasets[0]!.schema
    expect(schema !== undefined && 'columns' in schema ? schema.columns.at(-1) : undefined).toEqual({ name: 'doc', type: 'json', keepText: true })
    expect(errorOf(withColumn({ name: 'label', type: 'string', keepText: true })).message).toMatch(/datasets\.0\.schema\.columns\.9\.keepText: only a json column keeps its text/)
    expect(errorOf(withColumn({ name: 'doc', type: 'json', keepText: true }, ['order_id', 'doc'])).message).toMatch(/datasets\.0\.schema\.columns\.9\.keepText: a key column cannot keep its JSON text/)
    // a flag set to false is no option set
    expect(() => parseConfig(withColumn({ name: 'label', type: 'string', keepText: false }))).not.toThrow()
  })

  it('refuses unknown fields and wrong types', () => {
    expect(errorOf({ ...valid, colour: 'blue' }).message).toMatch(/colour/)
    expect(errorOf({ ...valid, gossip: { intervalMs: 'often' } }).message).toMatch(/gossip\.intervalMs/)
    expect(errorOf({ ...valid, region: 'us east' }).message).toMatch(/region: must be/)
    expect(errorOf({ ...valid, index: { pageCacheMiB: -1 } }).message).toMatch(/index\.pageCacheMiB/)
    expect(errorOf({ ...valid, datasets: [] }).message).toMatch(/datasets/)
  })

  it('reads YAML and JSON files, resolving paths against the file', async () => {
    const yamlPath = join(dir.path, 'agent.yaml')
    await writeFile(yamlPath, `cluster: prod\nregion: us-east\ndataDir: ./state\ndatasets:\n  - name: orders\n    sourceOfTruth: [us-east]\n    store: { kind: level, path: ./orders }\n    schema:\n      columns:\n        - { name: id, type: integer }\n      primaryKey: [id]\n`)
    const c = await loadConfig(yamlPath)
    expect(c.dataDir).toBe(join(dir.path, 'state'))
    const jsonPath = join(dir.path, 'agent.json')
    await writeFile(jsonPath, JSON.stringify(valid))
    expect((await loadConfig(jsonPath)).region).toBe('us-east')
  })

  it('says which file does not parse or cannot be read', async () => {
    const bad = join(dir.path, 'bad.yaml')
    await writeFile(bad, 'cluster: [unclosed')
    await expect(loadConfig(bad)).rejects.toThrow(/bad\.yaml does not parse/)
    await expect(loadConfig(join(dir.path, 'missing.yaml'))).rejects.toThrow(/cannot read config file/)
  })

  it('refuses what YAML only warns about: a tag it does not know (read as plain text), an unknown directive', async () => {
    const tagged = join(dir.path, 'tagged.yaml')
    // an operator expecting the environment's value would otherwise run as the region "REGION"
    await writeFile(tagged, 'cluster: prod\nregion: !env REGION\n')
    const err = await loadConfig(tagged).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toMatch(/tagged\.yaml does not parse:\n {2}Unresolved tag: !env at line 2, column 9/)
    expect((err as Error).message).toMatch(/no custom tags \(such as !env\)/)
    const directive = join(dir.path, 'directive.yaml')
    await writeFile(directive, '%FOO bar\n---\ncluster: prod\n')
    await expect(loadConfig(directive)).rejects.toThrow(/directive\.yaml does not parse:\n {2}Unknown directive %FOO at line 1/)
  })

  it('refuses an alias to no anchor and too many alias expansions with CONVERGE_CONFIG_INVALID, not a stack', async () => {
    const dangling = join(dir.path, 'dangling.yaml')
    await writeFile(dangling, 'cluster: *prod\n')
    await expect(loadConfig(dangling)).rejects.toMatchObject({ code: 'CONVERGE_CONFIG_INVALID', message: expect.stringMatching(/dangling\.yaml does not parse: .*alias.*prod/i) })
    // a bare `*` and a character after it, as a fuzzer found: an alias named "!"
    await writeFile(dangling, '*!')
    await expect(loadConfig(dangling)).rejects.toMatchObject({ code: 'CONVERGE_CONFIG_INVALID' })
    const laughs = join(dir.path, 'laughs.yaml')
    await writeFile(laughs, `a: &a [x, x, x, x, x, x, x, x, x, x]\n${Array.from({ length: 6 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(', ')}]`).join('\n')}\n`)
    await expect(loadConfig(laughs)).rejects.toMatchObject({ code: 'CONVERGE_CONFIG_INVALID', message: expect.stringMatching(/laughs\.yaml does not parse: .*alias/i) })
  })

  it('takes a partition column only from the primary key', () => {
    const schema = { ...ORDERS_SCHEMA, partitionColumn: 'region' }
    const e = errorOf({ ...valid, datasets: [{ ...valid.datasets[0], schema }] })
    expect(e.message).toMatch(/datasets\.0\.schema\.partitionColumn: "region" must be one of the primary key columns/)
    const keyed = { ...ORDERS_SCHEMA, primaryKey: ['region', 'order_id'], partitionColumn: 'region' }
    expect(parseConfig({ ...valid, datasets: [{ ...valid.datasets[0], schema: keyed }] }).datasets[0]!.schema).toMatchObject({ partitionColumn: 'region' })
  })
})
