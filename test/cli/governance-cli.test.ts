import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../../cluster/free-port.ts'
import { fetchStatus, launchAgent, stopAgent, type AgentProcess } from '../../cluster/launcher.ts'
import { orderRow, ordersCodec as codec, seedOrders } from '../../cluster/orders.ts'
import type { AuditEntry } from '../../src/audit/audit-log.ts'
import { AuditChainError } from '../../src/errors.ts'
import { TokenRing } from '../../src/status/auth.ts'
import { StatusServer, type AdminActions, type AuditQuery } from '../../src/status/server.ts'
import { agentConfig, allRows, tempDir, waitFor, withOrdersStore } from '../helpers/agents.ts'
import { convergeEnv, type CliResult } from '../helpers/cli-env.ts'

const ROWS = 2000
const EXTRA = ROWS + 5
const SECRETS = { victor: 'victor-viewer-token-0003', alice: 'alice-approver-token-0001', ada: 'ada-admin-token-000000004' } as const
const ROLES = { victor: 'viewer', alice: 'approver', ada: 'admin' } as const
type Who = keyof typeof SECRETS

interface Review { id: string, dataset: string, state: string, upserts: number, deletes: number, decidedBy: string | null, fixIds: string[] }
interface Status { datasets: Array<{ name: string, state: string, root?: { count: number, sum: string } }> }

/**
 * Governance from the command line, end to end: two real agent processes on
 * LevelDB stores (a source of truth, and a replica under the review rule with
 * status tokens), driven only through the real `converge` command.
 */
describe('the converge governance commands against running agents (real child processes)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  const agents: AgentProcess[] = []
  let sot: AgentProcess
  let replica: AgentProcess
  let url: string
  const tokenFile: Record<Who, string> = { victor: '', alice: '', ada: '' }
  /** The replica's rows once drifted, before its agent ever ran. */
  let drifted: Map<string, string>

  /** Runs `converge` with a token: from its file (--token-file) or, with `viaEnv`, the CONVERGE_TOKEN variable. */
  const cli = async (args: string[], who?: Who, viaEnv = false): Promise<CliResult> => {
    if (who === undefined) return await convergeEnv(args)
    return viaEnv ? await convergeEnv(args, { CONVERGE_TOKEN: SECRETS[who] }) : await convergeEnv([...args, '--token-file', tokenFile[who]])
  }
  const get = async <T>(path: string): Promise<T> => {
    const res = await fetch(new URL(path, url), { headers: { authorization: `Bearer ${SECRETS.victor}` }, signal: AbortSignal.timeout(5000) })
    return await res.json() as T
  }
  const pending = async (): Promise<Review[]> => {
    try { return (await get<{ reviews?: Review[] }>('/reviews?state=pending')).reviews ?? [] } catch { return [] } // not answering yet
  }
  /** Each agent's root for orders: read through `converge status --json` with `viaCli`, else straight from /status (for polling). */
  const roots = async (viaCli = false): Promise<{ sot?: string, replica?: string }> => {
    const rootOf = (s: Status | undefined): string | undefined => s?.datasets.find(d => d.name === 'orders')?.root?.sum
    if (!viaCli) {
      const [s, r] = await Promise.all([fetchStatus<Status>(sot), fetchStatus<Status>(replica)])
      return { sot: rootOf(s), replica: rootOf(r) }
    }
    const [s, r] = await Promise.all([sot, replica].map(async a => await cli(['status', '--url', a.statusUrl, '--json'])))
    const parsed = (x: CliResult): Status | undefined => (x.code === 0 ? JSON.parse(x.stdout) as Status : undefined)
    return { sot: rootOf(parsed(s!)), replica: rootOf(parsed(r!)) }
  }

  beforeAll(async () => {
    dir = await tempDir('converge-governance-cli-')
    for (const region of ['sot', 'b']) {
      await withOrdersStore(join(dir.path, region, 'orders'), async store => {
        await seedOrders(store, 0, ROWS)
        // behind the replica's back: three rows changed, one deleted, one extra
        if (region === 'b') {
          await store.apply({ upserts: [1, 2, 3].map(id => codec.encodeRow(orderRow(id, 9))).concat(codec.encodeRow(orderRow(EXTRA))), deletes: [codec.encodeKey({ order_id: 10 })], origin: 'test' })
          drifted = await allRows(store)
        }
      })
    }
    const tokens = []
    for (const who of Object.keys(SECRETS) as Who[]) {
      tokenFile[who] = join(dir.path, `${who}.token`)
      await writeFile(tokenFile[who], SECRETS[who])
      await chmod(tokenFile[who], 0o600)
      tokens.push({ name: who, role: ROLES[who], tokenFile: tokenFile[who] })
    }
    const [sotP2p, sotStatus, bStatus] = [await freePort(), await freePort(), await freePort()]
    sot = await launchAgent(dir.path, { ...agentConfig(dir.path, 'sot', [], ['sot']), listen: [`/ip4/127.0.0.1/tcp/${sotP2p}`], status: { host: '127.0.0.1', port: sotStatus } })
    agents.push(sot)
    const bConfig = { ...agentConfig(dir.path, 'b', [{ region: 'sot', address: `/ip4/127.0.0.1/tcp/${sotP2p}` }], ['sot']), status: { host: '127.0.0.1', port: bStatus, tokens } }
    bConfig.datasets[0]!.rule = 'review'
    replica = await launchAgent(dir.path, bConfig)
    agents.push(replica)
    url = replica.statusUrl
    await waitFor('the replica to hold the drift for review', async () => (await pending()).length === 1, 30_000, 100)
  }, 45_000)

  afterAll(async () => {
    await Promise.all(agents.map(async a => await stopAgent(a, 5000)))
    await dir?.remove()
  })

  let reviewId: string
  let fixId: string

  it('reviews lists the held fix as a table and as JSON', async () => {
    const [tableRun, jsonRun] = await Promise.all([cli(['reviews', '--url', url], 'victor', true), cli(['reviews', '--url', url, '--json'], 'victor')])
    expect(jsonRun.code).toBe(0)
    const reviews = JSON.parse(jsonRun.stdout) as Review[]
    expect(reviews).toHaveLength(1)
    expect(reviews[0]).toMatchObject({ dataset: 'orders', state: 'pending', upserts: 4, deletes: 1, decidedBy: null, fixIds: [] })
    reviewId = reviews[0]!.id

    expect(tableRun.code).toBe(0)
    const lines = tableRun.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^ID\s+DATASET\s+PARTITION\s+STATE\s+ROWS\s+CREATED\s+WHY$/)
    expect(lines).toHaveLength(2)
    expect(lines[1]).toMatch(new RegExp(`^${reviewId}\\s+orders\\s+-\\s+pending\\s+\\+4 -1\\s+\\d{4}-\\d\\d-\\d\\dT\\S+Z\\s+\\S`))
  })

  it('review ID prints the diff: ~ changed, + missing here, - extra here', async () => {
    const r = await cli(['review', reviewId, '--url', url], 'victor')
    expect(r.code).toBe(0)
    const lines = r.stdout.trimEnd().split('\n')
    expect(lines[0]).toBe(`review ${reviewId}  dataset orders  pending`)
    expect(lines[1]).toMatch(/^why: .*review/)
    for (const id of [1, 2, 3]) {
      const at = lines.findIndex(l => l.startsWith(`~ {"order_id":${id}} `))
      expect(at).toBeGreaterThan(1)
      expect(JSON.parse(lines[at]!.slice(`~ {"order_id":${id}} `.length))).toMatchObject({ order_id: id, amount: codec.decodeRow(codec.encodeRow(orderRow(id, 9))).amount })
      // the row it becomes, on the next line, under the row it replaces
      expect(lines[at + 1]).toMatch(new RegExp(`^ {${2 + `{"order_id":${id}}`.length}} → \\{"order_id":${id},`))
      expect(JSON.parse(lines[at + 1]!.split(' → ')[1]!)).toMatchObject({ order_id: id, amount: codec.decodeRow(codec.encodeRow(orderRow(id))).amount })
    }
    expect(lines.filter(l => l.startsWith('+ '))).toEqual([expect.stringMatching(/^\+ \{"order_id":10\} \{"order_id":10,/)])
    expect(lines.filter(l => l.startsWith('- '))).toEqual([expect.stringMatching(new RegExp(`^- \\{"order_id":${EXTRA}\\} \\{"order_id":${EXTRA},`))])
    const json = await cli(['review', reviewId, '--url', url, '--json'], 'victor', true)
    expect(JSON.parse(json.stdout)).toMatchObject({ id: reviewId, diff: { truncated: false } })

    const missing = await cli(['review', 'no-such-review', '--url', url], 'victor')
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain('CONVERGE_REVIEW_NOT_FOUND')
  })

  it('approve: bad usage exits 2, a caller without the approver role exits 1 (FORBIDDEN), an approver applies the fix', async () => {
    const [noReason, noToken, viewer] = await Promise.all([
      cli(['approve', reviewId, '--url', url], 'alice'),
      cli(['approve', reviewId, '--url', url, '--reason', 'x']),
      cli(['approve', reviewId, '--url', url, '--reason', 'looks fine'], 'victor', true)
    ])
    expect(noReason.code).toBe(2)
    expect(noReason.stderr).toMatch(/required option '--reason <text>' not specified/)
    expect(noToken.code).toBe(1)
    expect(noToken.stderr).toContain('[UNAUTHORIZED]')
    expect(viewer.code).toBe(1)
    expect(viewer.stderr).toMatch(/"victor" has the viewer role; this needs approver \[FORBIDDEN\]/)
    expect((await pending()).map(r => r.id)).toEqual([reviewId])

    const approved = await cli(['approve', reviewId, '--url', url, '--reason', 'checked with billing'], 'alice', true)
    expect(approved.stderr).toBe('')
    expect(approved.code).toBe(0)
    const m = new RegExp(`^review ${reviewId} approved by alice: applied as fix (\\S+)\\n$`).exec(approved.stdout)
    expect(m).not.toBeNull()
    fixId = m![1]!
    await waitFor('the replica root to equal the source\'s', async () => { const r = await roots(); return r.sot !== undefined && r.replica === r.sot }, 15_000, 100)
    const seen = await roots(true)
    expect(seen.replica).toMatch(/^[0-9a-f]{16}$/)
    expect(seen.replica).toBe(seen.sot)

    const again = await cli(['approve', reviewId, '--url', url, '--reason', 'again'], 'alice')
    expect(again.code).toBe(1)
    expect(again.stderr).toContain('CONVERGE_REVIEW_CLOSED')
  })

  it('rollback FIX: refused below admin, done by an admin, refused when repeated', async () => {
    const [noReason, approver] = await Promise.all([
      cli(['rollback', fixId, '--url', url], 'ada'),
      cli(['rollback', fixId, '--url', url, '--reason', 'wrong snapshot'], 'alice')
    ])
    expect(noReason.code).toBe(2)
    expect(approver.code).toBe(1)
    expect(approver.stderr).toMatch(/"alice" has the approver role; this needs admin \[FORBIDDEN\]/)

    const rolled = await cli(['rollback', fixId, '--url', url, '--reason', 'wrong snapshot'], 'ada')
    expect(rolled.stderr).toBe('')
    expect(rolled.code).toBe(0)
    expect(rolled.stdout).toMatch(new RegExp(`^fix ${fixId} rolled back by fix \\S+ \\(5 rows\\)\\n$`))
    const r = await roots()
    expect(r.replica).toBeDefined()
    expect(r.replica).not.toBe(r.sot)

    const again = await cli(['rollback', fixId, '--url', url, '--reason', 'twice', '--force'], 'ada', true)
    expect(again.code).toBe(1)
    expect(again.stderr).toContain('CONVERGE_FIX_ALREADY_ROLLED_BACK')
    const unknown = await cli(['rollback', 'no-such-fix', '--url', url, '--reason', 'x'], 'ada')
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain('CONVERGE_FIX_NOT_FOUND')
  })

  it('reconcile DATASET syncs now: the rolled-back rows go to review; reject refuses that fix, and it is not proposed again', async () => {
    const [viewer, unknown] = await Promise.all([
      cli(['reconcile', 'orders', '--url', url], 'victor'),
      cli(['reconcile', 'no-such-dataset', '--url', url], 'ada')
    ])
    expect(viewer.code).toBe(1)
    expect(viewer.stderr).toContain('[FORBIDDEN]')
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain('CONVERGE_UNKNOWN_DATASET')
    // asked for explicitly: after approve → in sync → rollback, the replica's root is back at the very root it was
    // held at when the first review was proposed, and DatasetReplica keeps that hold (its `settled`), so it does not sync on its own
    const first = await cli(['reconcile', 'orders', '--url', url], 'ada', true)
    expect(first.stderr).toBe('')
    expect(first.code).toBe(0)
    expect(first.stdout).toBe('orders: 1 missing, 3 changed, 1 extra; 0 fixes applied\n')
    const reviews = await pending()
    expect(reviews).toHaveLength(1)
    const second = reviews[0]!
    expect(second.id).not.toBe(reviewId)
    expect(second).toMatchObject({ upserts: 4, deletes: 1 })

    const noReason = await cli(['reject', second.id, '--url', url], 'alice')
    expect(noReason.code).toBe(2)
    const viewerReject = await cli(['reject', second.id, '--url', url, '--reason', 'no'], 'victor')
    expect(viewerReject.code).toBe(1)
    expect(viewerReject.stderr).toContain('[FORBIDDEN]')
    const rejected = await cli(['reject', second.id, '--url', url, '--reason', 'the rollback stands'], 'alice', true)
    expect(rejected.code).toBe(0)
    expect(rejected.stdout).toBe(`review ${second.id} rejected by alice\n`)
    const all = await cli(['reviews', '--url', url, '--state', 'all', '--json'], 'victor')
    expect((JSON.parse(all.stdout) as Review[]).map(r => [r.id, r.state]).sort()).toEqual([[reviewId, 'applied'], [second.id, 'rejected']].sort())
    const none = await cli(['reviews', '--url', url], 'victor')
    expect([none.code, none.stdout]).toEqual([0, 'no pending reviews\n'])

    const again = await cli(['reconcile', 'orders', '--url', url], 'ada')
    expect(again.code).toBe(0)
    expect(again.stdout).toBe('orders: 1 missing, 3 changed, 1 extra; 0 fixes applied\n')
    expect(await pending()).toEqual([])
  })

  let remoteJson: string

  it('audit --url lists the log (table and JSON lines) and audit verify --url walks the chain', async () => {
    const [jsonRun, commits, byFix, none, noToken, badUsage] = await Promise.all([
      cli(['audit', '--url', url, '--json'], 'victor', true),
      cli(['audit', '--url', url, '--kind', 'commit'], 'victor'),
      cli(['audit', '--url', url, '--fix', fixId, '--json'], 'victor'),
      cli(['audit', '--url', url, '--fix', 'no-such-fix'], 'victor'),
      cli(['audit', '--url', url]),
      cli(['audit', '--url', url, '--data-dir', join(dir.path, 'b', 'agent')], 'victor')
    ])
    expect(jsonRun.code).toBe(0)
    remoteJson = jsonRun.stdout
    const entries = jsonRun.stdout.trimEnd().split('\n').map(l => JSON.parse(l) as Record<string, any>)
    expect(entries.map(e => e.seq)).toEqual(entries.map((_, i) => i + 1))
    expect(entries.map(e => e.kind)).toEqual(['review', 'review-approved', 'intent', 'commit', 'intent', 'commit', 'review', 'review-rejected'])
    expect(entries[1]).toMatchObject({ kind: 'review-approved', reviewId, by: 'alice', reason: 'checked with billing' })
    const commit = entries[3]!
    expect(commit).toMatchObject({ fixId, by: 'alice', reviewId, dataset: 'orders', region: 'b' })
    // bytes as hex, as offline
    expect(entries[2]!.upserts).toHaveLength(4)
    for (const b of [...entries[2]!.upserts, ...entries[2]!.deletes, ...commit.before.filter((x: unknown) => x !== null)]) expect(b).toMatch(/^[0-9a-f]+$/)
    expect(entries[5]).toMatchObject({ kind: 'commit', rollbackOf: fixId, by: 'ada', reason: 'wrong snapshot' })

    expect(commits.code).toBe(0)
    const lines = commits.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^SEQ\s+TIME\s+KIND\s+DATASET\s+FIX\s+CID\s+ROWS\s+NOTE$/)
    expect(lines.slice(1).map(l => l.split(/\s+/).slice(0, 5))).toEqual([['4', expect.any(String), 'commit', 'orders', fixId], ['6', expect.any(String), 'commit', 'orders', entries[5]!.fixId]])
    expect(lines[1]).toMatch(/\s5\s+by alice$/)
    expect(lines[2]).toMatch(new RegExp(`\\s5\\s+rolls back ${fixId}; by ada; wrong snapshot$`))

    expect(byFix.stdout.trimEnd().split('\n').map(l => (JSON.parse(l) as { kind: string }).kind)).toEqual(['intent', 'commit'])
    expect(none.code).toBe(1)
    expect(none.stderr).toContain('no audit entries for fix no-such-fix')
    expect(noToken.code).toBe(1)
    expect(noToken.stderr).toContain('[UNAUTHORIZED]')
    expect(badUsage.code).toBe(2)
    expect(badUsage.stderr).toContain('not both')

    const [verify, verifyBefore, verifyNoToken] = await Promise.all([
      cli(['audit', 'verify', '--url', url], 'victor', true),
      cli(['audit', '--url', url, 'verify'], 'victor'),
      cli(['audit', 'verify', '--url', url])
    ])
    expect([verify.code, verify.stdout]).toEqual([0, 'audit chain intact: 8 entries\n'])
    expect([verifyBefore.code, verifyBefore.stdout]).toEqual([0, 'audit chain intact: 8 entries\n'])
    expect(verifyNoToken.code).toBe(1)
  })

  it('every command\'s --help shows an example', async () => {
    const commands = [['reviews'], ['review'], ['approve'], ['reject'], ['rollback'], ['reconcile'], ['audit'], ['audit', 'verify']]
    const runs = await Promise.all(commands.map(async c => await cli([...c, '--help'])))
    runs.forEach((r, i) => {
      expect(r.code, commands[i]!.join(' ')).toBe(0)
      expect(r.stdout, commands[i]!.join(' ')).toMatch(new RegExp(`Examples?:\\n(\\s+.*\\n)*\\s+(CONVERGE_TOKEN=… )?converge ${commands[i]!.join(' ')} `))
    })
    // audit shows both of its modes
    expect(runs[6]!.stdout).toMatch(/converge audit --url http/)
    expect(runs[6]!.stdout).toMatch(/converge audit --data-dir \//)
    expect(runs[7]!.stdout).toMatch(/converge audit verify --url http/)
    expect(runs[7]!.stdout).toMatch(/converge audit verify --data-dir \//)
  })

  it('once the agents stop: the offline audit prints the same JSON lines, and the stores hold what the governance decided', async () => {
    // stopped by SIGTERM (not killed after the grace period), so their LevelDB can be opened here
    expect(await stopAgent(replica)).not.toBeNull()
    expect(await stopAgent(sot)).not.toBeNull()
    const offline = await cli(['audit', '--data-dir', join(dir.path, 'b', 'agent'), '--json'])
    expect(offline.code).toBe(0)
    expect(offline.stdout).toBe(remoteJson)
    const verify = await cli(['audit', 'verify', '--data-dir', join(dir.path, 'b', 'agent')])
    expect(verify.stdout).toBe('audit chain intact: 8 entries\n')
    // approved, then rolled back, then the same fix rejected: the replica is as drifted as it began
    expect(await withOrdersStore(join(dir.path, 'b', 'orders'), allRows)).toEqual(drifted)
    expect((await withOrdersStore(join(dir.path, 'sot', 'orders'), allRows)).size).toBe(ROWS)
  })
})

/**
 * What only a status port that misbehaves or holds a long log shows: an
 * in-process status server whose audit answers are made up, asked by the
 * real `converge audit --url`.
 */
describe('converge audit --url against a status port with made-up answers', () => {
  const SECRET = 'stub-viewer-token-000001'
  let server: StatusServer
  let url: string
  let answer: (q: AuditQuery) => AuditEntry[]
  const asked: AuditQuery[] = []
  let chain: () => Promise<unknown>

  const entry = (seq: number): AuditEntry => ({
    seq, at: Date.UTC(2026, 2, 1) + seq, kind: seq % 2 === 1 ? 'intent' : 'commit', fixId: `fix-${Math.ceil(seq / 2)}`, correlationId: 'cid', dataset: 'orders', region: 'b', clock: { b: seq },
    // a Buffer (what the log decodes to) and a bare byte array reach JSON differently; both must print as hex
    upserts: [seq % 2 === 0 ? Buffer.from([seq, 0xff]) : new Uint8Array([seq, 0xff])], prevHash: '0', hash: '1'
  })

  beforeAll(async () => {
    const tokens = await TokenRing.load([{ name: 'victor', role: 'viewer', tokenEnv: 'STUB_TOKEN' }], { STUB_TOKEN: SECRET })
    const admin = {
      audit: async (q: AuditQuery) => { asked.push(q); return { entries: answer(q) } },
      verifyAudit: async () => await chain()
    } as unknown as AdminActions
    server = new StatusServer({ agent: { statusReport: () => ({ ready: true }) }, admin, tokens, host: '127.0.0.1', port: 0 })
    await server.start()
    url = server.url!
  })
  afterAll(async () => { await server?.stop() })

  it('passes the filters on, hex-encodes bytes, and keeps --reverse and --limit exact or refuses', async () => {
    const five = Array.from({ length: 5 }, (_, i) => entry(i + 1))
    const many = Array.from({ length: 10_000 }, (_, i) => entry(i + 1))
    answer = q => (q.limit === 10_000 && q.dataset === 'big' ? many : five.slice(0, q.limit))
    const env = { CONVERGE_TOKEN: SECRET }
    const [filtered, latest, reverseTooMany, cut, overLimit] = await Promise.all([
      convergeEnv(['audit', '--url', url, '--dataset', 'orders', '--since', '2026-03-01', '--until', '2026-03-02T00:00:00Z', '--fix', 'fix-1', '--cid', 'cid', '--kind', 'intent', '--limit', '3', '--json'], env),
      convergeEnv(['audit', '--url', url, '--reverse', '--limit', '2'], env),
      convergeEnv(['audit', '--url', url, '--dataset', 'big', '--reverse', '--json'], env),
      convergeEnv(['audit', '--url', url, '--dataset', 'big', '--json'], env),
      convergeEnv(['audit', '--url', url, '--limit', '10001'], env)
    ])
    expect(asked).toContainEqual({ dataset: 'orders', since: Date.UTC(2026, 2, 1), until: Date.UTC(2026, 2, 2), fixId: 'fix-1', correlationId: 'cid', kind: 'intent', limit: 3 })
    expect(filtered.code).toBe(0)
    expect(filtered.stdout.trimEnd().split('\n').map(l => JSON.parse(l) as Record<string, unknown>).map(e => [e.seq, e.upserts])).toEqual([[1, ['01ff']], [2, ['02ff']], [3, ['03ff']]])

    expect(latest.code).toBe(0)
    expect(latest.stdout.trimEnd().split('\n').slice(1).map(l => l.split(/\s+/)[0])).toEqual(['5', '4'])
    expect(reverseTooMany.code).toBe(1)
    expect(reverseTooMany.stderr).toContain('CONVERGE_AUDIT_TOO_MANY')
    expect(reverseTooMany.stdout).toBe('')
    expect(cut.code).toBe(0)
    expect(cut.stdout.trimEnd().split('\n')).toHaveLength(10_000)
    expect(cut.stderr).toMatch(/at most 10000 entries at a time: the listing may stop short/)
    expect(overLimit.code).toBe(2)
    expect(asked.some(q => q.limit > 10_000)).toBe(false)
  })

  it('audit verify --url reports a broken chain with exit 1, and an intact one with exit 0', async () => {
    chain = async () => { throw new AuditChainError('audit entry 3 was altered') }
    const broken = await convergeEnv(['audit', 'verify', '--url', url], { CONVERGE_TOKEN: SECRET })
    expect([broken.code, broken.stdout]).toEqual([1, 'audit chain broken: audit entry 3 was altered\n'])
    chain = async () => ({ ok: true, entries: 12 })
    const intact = await convergeEnv(['audit', 'verify', '--url', url], { CONVERGE_TOKEN: SECRET })
    expect([intact.code, intact.stdout]).toEqual([0, 'audit chain intact: 12 entries\n'])
  })
})
