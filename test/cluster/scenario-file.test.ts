import { readdir } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { loadScenario, parseDuration, parseScenario, setPath } from '../../cluster/scenario.ts'
import { overridesText } from '../../cluster/report.ts'
import { ConfigError } from '../../src/errors.ts'

const SCENARIOS = new URL('../../cluster/scenarios/', import.meta.url).pathname

/** The message of the ConfigError parsing `text` throws. */
function problems (text: string, options = {}): string {
  try {
    parseScenario(text, 'test.yaml', options)
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return (err as Error).message
  }
  throw new Error('the scenario validated')
}

const BASE = `name: t
regions:
  - { name: a, store: level }
  - { name: b, store: postgres }
  - { name: c, store: sqlite }
datasets:
  - { name: orders, rows: 1000 }
`

describe('scenario files', () => {
  it('a bare name is one of the built-in scenarios; an unknown one is refused with the list', async () => {
    expect((await loadScenario('store-faults', { quick: true })).name).toBe('store-faults')
    await expect(loadScenario('no-such-scenario')).rejects.toThrow(/cannot read scenario no-such-scenario: .*built-in ones: .*partition-heal/)
  })

  it('every ready scenario validates, as it is and in its quick version', async () => {
    const files = (await readdir(SCENARIOS)).filter(f => f.endsWith('.yaml'))
    expect(files.sort()).toEqual(['demo.yaml', 'five-regions-1m.yaml', 'kill-mid-repair.yaml', 'live-writes.yaml', 'partition-heal.yaml', 'slow-wan.yaml', 'sot-failover.yaml', 'store-crash.yaml', 'store-faults.yaml'])
    for (const f of files) {
      const full = await loadScenario(SCENARIOS + f)
      const quick = await loadScenario(SCENARIOS + f, { quick: true })
      expect(quick.name).toBe(full.name)
      // the quick version is the same scenario, smaller
      expect(quick.datasets[0]!.rows).toBeLessThanOrEqual(full.datasets[0]!.rows)
      expect(quick.regions).toEqual(full.regions)
      expect(quick.faults.map(x => x.kind)).toEqual(full.faults.map(x => x.kind))
    }
    const big = await loadScenario(`${SCENARIOS}five-regions-1m.yaml`)
    expect(big.regions.map(r => r.name)).toEqual(['us-east', 'us-west', 'eu-west', 'ap-south', 'sa-east'])
    expect(big.datasets[0]!.rows).toBe(1_000_000)
    expect(big.drift[0]!.share).toBe(0.001)
    const wan = await loadScenario(`${SCENARIOS}slow-wan.yaml`)
    expect(wan.faults[0]).toMatchObject({ kind: 'link', region: 'ap-south', rttMs: 100, bandwidthMbps: 10 })
    expect((await loadScenario(`${SCENARIOS}live-writes.yaml`)).load).toMatchObject({ rowsPerSecond: 1000, region: 'us-east' })
  })

  it('fills defaults: the first region serves, drift goes to every replica, durations become ms', () => {
    const s = parseScenario(`${BASE}drift:\n  - { rows: 10 }\n  - { rowsPerSecond: 5, from: 1s, until: 1.5m, regions: [b] }\nfaults:\n  - { kind: cut, region: c, at: 2s, duration: 500ms }\n`)
    expect(s.sourceOfTruth).toEqual(['a'])
    expect(s.drift[0]!.regions).toEqual(['b', 'c'])
    expect(s.drift[0]!.dataset).toBe('orders')
    expect(s.drift[1]).toMatchObject({ from: 1000, until: 90_000 })
    expect(s.faults[0]).toMatchObject({ at: 2000, duration: 500, mode: 'silent' })
    expect(s.expect).toEqual({ convergeWithin: 60_000, maxRssMiB: 1024 })
    expect(s.regions.map(r => r.server)).toEqual(['shared', 'shared', 'shared'])
  })

  it('puts a postgres region on a server of its own when asked, or when a fault crashes its server', () => {
    expect(parseScenario('name: t\nregions:\n  - { name: a, store: postgres, server: own }\n  - { name: b, store: postgres }\n').regions.map(r => r.server)).toEqual(['own', 'shared'])
    expect(parseScenario('name: t\nregions: { count: 3, store: postgres, stores: { r3: sqlite }, server: own }\n').regions.map(r => r.server)).toEqual(['own', 'own', 'shared'])
    const crashed = parseScenario(`${BASE}faults:\n  - { kind: store, region: b, at: 1s, duration: 2s, mode: crash }\n`)
    expect(crashed.regions.map(r => [r.name, r.server])).toEqual([['a', 'shared'], ['b', 'own'], ['c', 'shared']])
    expect(problems('name: t\nregions:\n  - { name: a, store: level, server: own }\n')).toMatch(/regions\.0\.server: a server of its own is for a postgres region; a keeps its rows in level/)
  })

  it('takes the count shorthand for regions', () => {
    const s = parseScenario('name: t\nregions: { count: 3, store: sqlite, stores: { r2: level } }\n')
    expect(s.regions).toEqual([{ name: 'r1', store: 'sqlite', server: 'shared' }, { name: 'r2', store: 'level', server: 'shared' }, { name: 'r3', store: 'sqlite', server: 'shared' }])
  })

  it('refuses a YAML tag it does not know, in the file and in --set, instead of reading it as text', () => {
    expect(problems(`${BASE}seed: !env SEED\n`)).toMatch(/test\.yaml does not parse:\n {2}Unresolved tag: !env at line 8, column 7[^]*no custom tags/)
    expect(problems(BASE, { set: ['seed=!env SEED'] })).toMatch(/--set "seed=!env SEED": the value does not parse: Unresolved tag: !env/)
  })

  it('refuses an alias to no anchor, in the file and in --set, as a scenario error', () => {
    expect(problems(`${BASE}seed: *seed\n`)).toMatch(/test\.yaml does not parse: .*alias.*seed/i)
    expect(problems(BASE, { set: ['seed=*seed'] })).toMatch(/--set "seed=\*seed": the value does not parse: .*alias/i)
  })

  it('names the field and its line in every error', () => {
    expect(problems(`${BASE}faults:\n  - { kind: cut, region: b, at: soon, duration: 1s }\n`))
      .toMatch(/test\.yaml:9: faults\.0\.at: "soon" is not a duration/)
    expect(problems(`${BASE}faults:\n  - { kind: kill, region: nowhere, at: 1s }\n`))
      .toMatch(/test\.yaml:9: faults\.0\.region: no region "nowhere" \(regions: a, b, c\)/)
    expect(problems(`${BASE}faults:\n  - { kind: teleport, region: b, at: 1s }\n`)).toMatch(/faults\.0\.kind/)
    expect(problems(`${BASE}colour: blue\n`)).toMatch(/\(top level\): Unrecognized key: "colour"/)
    expect(problems(`${BASE}drift:\n  - { rows: 10, share: 0.1 }\n`)).toMatch(/drift\.0: give exactly one of rows, share, rowsPerSecond or partitionLoss \(found rows, share\)/)
    expect(problems(`${BASE}drift:\n  - { rowsPerSecond: 10 }\n`)).toMatch(/drift\.0\.until: a drift rate needs `until`/)
    expect(problems('name: t\nregions: { count: 2, names: [x] }\n')).toMatch(/regions\.names: 1 names for 2 regions/)
  })

  it('refuses what cannot be done honestly on this machine', () => {
    // a LevelDB store is locked by its running agent: nothing else can write it then
    expect(problems(`${BASE}sourceOfTruth: [b]\ndrift:\n  - { at: 1s, rows: 5, regions: [a] }\n`)).toMatch(/drift\.0\.regions\.0: a keeps its rows in LevelDB, which its agent holds locked/)
    expect(problems(`${BASE}load: { rowsPerSecond: 10, until: 2s }\n`)).toMatch(/load\.region: a keeps its rows in LevelDB/)
    expect(problems(`${BASE}sourceOfTruth: [b, c]\nload: { rowsPerSecond: 10, until: 2s, region: a }\n`)).toMatch(/load\.region: a is not a source of truth/)
    expect(problems(`${BASE}drift:\n  - { rows: 5, regions: [a] }\n`)).toMatch(/a is the source of truth: a write there is not drift/)
    expect(problems(`${BASE}faults:\n  - { kind: sot-outage, at: 1s, duration: 2s }\n`)).toMatch(/faults\.0\.expectFailover: no source of truth after a to fail over to/)
    expect(problems(`${BASE}faults:\n  - { kind: store, region: a, at: 1s, duration: 2s, mode: stall }\n`)).toMatch(/faults\.0\.region: a has a LevelDB store/)
    expect(problems(`${BASE}faults:\n  - { kind: store, region: c, at: 1s, duration: 2s, mode: errors }\n`)).toMatch(/faults\.0\.mode: errors is for postgres/)
    expect(problems(`${BASE}faults:\n  - { kind: store, region: c, at: 1s, duration: 2s, mode: crash }\n`)).toMatch(/faults\.0\.mode: crash is for postgres \(its server crashes and restarts\)/)
    expect(problems(`${BASE}drift:\n  - { partitionLoss: 1 }\n`)).toMatch(/drift\.0\.partitionLoss: dataset "orders" has no partitions/)
  })

  it('checks agent settings and dataset policies against the agent config schema, under their scenario paths', () => {
    expect(problems(`${BASE}agent:\n  sync: { timeoutMs: 5 }\n`)).toMatch(/test\.yaml:9: agent\.sync\.timeoutMs: Too small/)
    expect(problems(`${BASE}agent:\n  gossip: { every: 5 }\n`)).toMatch(/agent\.gossip: Unrecognized key: "every"/)
    expect(problems(`${BASE}agent:\n  peers: []\n`)).toMatch(/agent\.peers: set by the runner/)
    expect(problems(`name: t\nregions: [{ name: a }, { name: b }]\ndatasets:\n  - { rows: 10, policy: { rule: sometimes } }\n`)).toMatch(/datasets\.0\.policy\.rule/)
  })

  it('applies quick and --set overrides before validating, and says an override is at fault', () => {
    const text = `${BASE}quick:\n  datasets.0.rows: 50\n  expect.convergeWithin: 5s\n`
    expect(parseScenario(text).datasets[0]!.rows).toBe(1000)
    const quick = parseScenario(text, 'test.yaml', { quick: true, set: ['faults.0={kind: cut, region: c, at: 1s, duration: 2s}'] })
    expect(quick.datasets[0]!.rows).toBe(50)
    expect(quick.expect.convergeWithin).toBe(5000)
    expect(quick.faults[0]).toMatchObject({ kind: 'cut', region: 'c', duration: 2000 })
    // kept for the report: its description speaks of the file as written
    expect(quick.overrides).toEqual([
      { path: 'datasets.0.rows', value: 50, by: 'quick' },
      { path: 'expect.convergeWithin', value: '5s', by: 'quick' },
      { path: 'faults.0', value: { kind: 'cut', region: 'c', at: '1s', duration: '2s' }, by: 'set' }
    ])
    expect(overridesText(quick.overrides)).toBe('--quick (datasets.0.rows=50, expect.convergeWithin=5s), --set faults.0={"kind":"cut","region":"c","at":"1s","duration":"2s"}')
    expect(parseScenario(text).overrides).toEqual([])
    expect(problems(BASE, { quick: true })).toMatch(/has no `quick` overrides/)
    expect(problems(BASE, { set: ['datasets.0.rows=-3'] })).toMatch(/\(override\) datasets\.0\.rows: Too small/)
    expect(problems(BASE, { set: ['rows'] })).toMatch(/write path=value/)
  })

  it('sets dotted paths, creating lists and mappings, and refuses prototype keys', () => {
    const o: Record<string, unknown> = {}
    setPath(o, 'faults.1.at', '2s')
    setPath(o, 'agent.sync.minIntervalMs', 5)
    expect(o).toEqual({ faults: [undefined, { at: '2s' }], agent: { sync: { minIntervalMs: 5 } } })
    expect(() => { setPath(o, '__proto__.x', 1) }).toThrow(ConfigError)
    expect(() => { setPath(o, 'faults.x', 1) }).toThrow(/must be a number/)
  })

  it('reads durations', () => {
    expect([parseDuration(250), parseDuration('250ms'), parseDuration('2s'), parseDuration('1.5m'), parseDuration('-90s'), parseDuration('2 h')]).toEqual([250, 250, 2000, 90_000, -90_000, 7_200_000])
    expect(parseDuration('soon')).toBeUndefined()
    expect(parseDuration('5 weeks')).toBeUndefined()
  })
})
