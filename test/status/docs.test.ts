import { readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { parse, parseAllDocuments } from 'yaml'
import { AgentMetrics } from '../../src/observability/metrics.ts'

const doc = async (path: string): Promise<string> => await readFile(new URL(`../../docs/${path}`, import.meta.url), 'utf8')

/** Every series name the agent can expose (histograms with their suffixes). */
async function seriesNames (): Promise<Set<string>> {
  const metrics = await new AgentMetrics({ region: 'r', cluster: 'c', processMetrics: false }).registry.getMetricsAsJSON()
  return new Set(metrics.flatMap(m => (String(m.type) === 'histogram' ? ['_bucket', '_sum', '_count'].map(s => m.name + s) : [m.name])))
}

const convergeNames = (expr: string): string[] => [...expr.matchAll(/\bconverge_[a-z_]+/g)].map(m => m[0])

describe('deployment examples', () => {
  it('alert rules parse and name only metrics the agent exposes', async () => {
    const names = await seriesNames()
    const rules = parse(await doc('prometheus/converge-alerts.yaml')).groups.flatMap((g: any) => g.rules)
    expect(rules.map((r: any) => r.alert)).toEqual(expect.arrayContaining(['ConvergeReplicaStale', 'ConvergeDriftNotRemediated', 'ConvergeDatasetQuarantined']))
    for (const r of rules) for (const name of convergeNames(r.expr)) expect(names, `${r.alert}: ${name}`).toContain(name)
  })

  it('the Grafana dashboard is JSON whose queries name only metrics the agent exposes', async () => {
    const names = await seriesNames()
    const dashboard = JSON.parse(await doc('grafana/converge-dashboard.json'))
    const exprs = dashboard.panels.flatMap((p: any) => p.targets.map((t: any) => t.expr as string))
    expect(exprs.length).toBeGreaterThan(10)
    for (const e of exprs) for (const name of convergeNames(e)) expect(names, name).toContain(name)
  })

  it('the Kubernetes example runs the agent as a native sidecar; the systemd unit runs the agent', async () => {
    const docs = parseAllDocuments(await doc('kubernetes/postgres-with-converge.yaml')).map(d => d.toJS())
    const set = docs.find(d => d.kind === 'StatefulSet')
    const sidecar = set.spec.template.spec.initContainers[0]
    expect(sidecar).toMatchObject({ name: 'converge', restartPolicy: 'Always' })
    expect(sidecar.livenessProbe.httpGet.path).toBe('/livez')
    expect(set.spec.template.spec.containers[0].image).toMatch(/^postgres:/)
    expect(parse(docs.find(d => d.kind === 'ConfigMap').data['converge.yaml']).datasets[0].store.kind).toBe('postgres')
    const unit = await doc('systemd/converge.service')
    expect(unit).toMatch(/^ExecStart=.* agent --config /m)
    expect(unit).toMatch(/^KillSignal=SIGTERM$/m)
  })
})
