/**
 * The agent's config file, validated once at the edge. Every error names the
 * field (`datasets.0.sourceOfTruth: ...`). Relative paths resolve against the
 * config file's directory.
 */
import { z } from 'zod'
import { COLUMN_TYPES } from '../digest/schema.ts'
import { formIssues, keyFormIssues } from '../digest/column-forms.ts'
import { TIME_PRECISIONS } from '../digest/timestamp.ts'
import { MAX_FRAME_BYTES } from '../constants.ts'

const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be 1-128 letters, digits, dot, dash or underscore, starting with a letter or digit')

const column = z.object({
  name: z.string().min(1).max(128),
  type: z.enum(COLUMN_TYPES),
  nullable: z.boolean().optional(),
  /** A timestamp's precision: ms (the default) or us (microseconds, as PostgreSQL holds them). */
  precision: z.enum(TIME_PRECISIONS).optional(),
  /** A decimal's digits as written, trailing fraction zeros included (10.50 stays 10.50); default false (digest/decimal.ts). */
  keepScale: z.boolean().optional(),
  /** A json column's text as written, key order and spacing included; default false: keys sorted (digest/json.ts). */
  keepText: z.boolean().optional()
}).strict().superRefine((c, ctx) => {
  for (const issue of formIssues(c)) ctx.addIssue({ code: 'custom', path: [issue.field], message: issue.message })
})

export const datasetSchemaSchema = z.object({
  version: z.number().int().min(1).default(1),
  columns: z.array(column).min(1),
  primaryKey: z.array(z.string().min(1)).min(1),
  ignoreColumns: z.array(z.string()).default([]),
  eventTimeColumn: z.string().optional(),
  /** A key column naming each row's partition (a day, a tenant); partitions are reconciled independently. */
  partitionColumn: z.string().optional()
}).strict().superRefine((s, ctx) => {
  const names = new Set<string>()
  s.columns.forEach((c, i) => {
    if (names.has(c.name)) ctx.addIssue({ code: 'custom', path: ['columns', i, 'name'], message: `duplicate column "${c.name}"` })
    names.add(c.name)
  })
  s.primaryKey.forEach((k, i) => { if (!names.has(k)) ctx.addIssue({ code: 'custom', path: ['primaryKey', i], message: `"${k}" is not a column` }) })
  s.columns.forEach((c, i) => {
    if (!s.primaryKey.includes(c.name)) return
    for (const issue of keyFormIssues(c)) ctx.addIssue({ code: 'custom', path: ['columns', i, issue.field], message: issue.message })
  })
  s.ignoreColumns.forEach((k, i) => {
    if (!names.has(k)) ctx.addIssue({ code: 'custom', path: ['ignoreColumns', i], message: `"${k}" is not a column` })
    if (s.primaryKey.includes(k)) ctx.addIssue({ code: 'custom', path: ['ignoreColumns', i], message: `key column "${k}" cannot be ignored` })
  })
  if (s.eventTimeColumn !== undefined && !names.has(s.eventTimeColumn)) ctx.addIssue({ code: 'custom', path: ['eventTimeColumn'], message: `"${s.eventTimeColumn}" is not a column` })
  if (s.partitionColumn !== undefined && !s.primaryKey.includes(s.partitionColumn)) ctx.addIssue({ code: 'custom', path: ['partitionColumn'], message: `"${s.partitionColumn}" must be one of the primary key columns` })
})

const levelStore = z.object({
  kind: z.literal('level'),
  /** Directory of the dataset's LevelDB store. */
  path: z.string().min(1)
}).strict()

const postgresStore = z.object({
  kind: z.literal('postgres'),
  /** e.g. postgres://converge@10.0.0.5:5432/shop */
  connectionString: z.string().min(1),
  /** Table, optionally schema-qualified: public.orders */
  table: z.string().min(1)
}).strict()

const sqliteStore = z.object({
  kind: z.literal('sqlite'),
  /** The SQLite database file. */
  path: z.string().min(1),
  table: z.string().min(1),
  /** Create the table from the schema when it does not exist. Default false. */
  createTable: z.boolean().default(false)
}).strict()

/** A schema read from the PostgreSQL catalog at start; ignored columns and event time are added here. */
const catalogSchema = z.object({
  fromCatalog: z.literal(true),
  version: z.number().int().min(1).default(1),
  ignoreColumns: z.array(z.string()).default([]),
  eventTimeColumn: z.string().optional(),
  partitionColumn: z.string().optional()
}).strict()

export const TOLERANCE_DEFAULTS = { graceMs: 0, confirmations: 1, acceptableRows: 0 }

/** What counts as drift worth fixing. */
export const toleranceSchema = z.object({
  /** Rows whose event time is younger than this are in flight, not drift (needs schema.eventTimeColumn). */
  graceMs: z.number().int().min(0).default(0),
  /** Rounds in a row that a row must be seen apart before it is fixed. */
  confirmations: z.number().int().min(1).max(100).default(1),
  /** A drift of at most this many rows is reported, not applied. */
  acceptableRows: z.number().int().min(0).default(0)
}).strict()

export const RISK_DEFAULTS = { reviewDeletes: false, history: 10 }

/** When an automatic fix turns into a review item instead. */
export const riskSchema = z.object({
  /** A fix of more rows than this. */
  maxRows: z.number().int().min(1).optional(),
  /** A fix touching more than this share (0-1) of the rows of its partition, or of the dataset when unpartitioned. */
  maxShare: z.number().min(0).max(1).optional(),
  /** Any fix that deletes a row. */
  reviewDeletes: z.boolean().default(false),
  /** A fix larger than this many times the largest of the last `history` fixes. */
  growthFactor: z.number().min(1).optional(),
  history: z.number().int().min(1).max(1000).default(10)
}).strict()

const dataset = z.object({
  name,
  schema: z.union([datasetSchemaSchema, catalogSchema]),
  store: z.discriminatedUnion('kind', [levelStore, postgresStore, sqliteStore]),
  /** Columns renamed here: { localName: sourceName }; rows are then compared with the source's under its names. */
  renames: z.record(z.string().min(1).max(128), z.string().min(1).max(128)).default({}),
  /** Regions whose rows are canonical, in order of preference: the first one reachable serves, and it serves again once it is back. */
  sourceOfTruth: z.array(name).min(1),
  /** restore: the SoT wins; merge: the later event time wins, local extra rows are kept; review: every fix waits for a person. */
  rule: z.enum(['restore', 'merge', 'review']).default('restore'),
  tolerance: toleranceSchema.default(TOLERANCE_DEFAULTS),
  risk: riskSchema.default(RISK_DEFAULTS),
  review: z.object({
    /** Names (from status tokens) allowed to approve or reject this dataset's fixes; empty: any token with the approver role. */
    approvers: z.array(z.string().min(1).max(128)).default([])
  }).strict().default({ approvers: [] })
}).strict().superRefine((d, ctx) => {
  const schema = d.schema
  const eventTime = 'eventTimeColumn' in schema ? schema.eventTimeColumn : undefined
  if (d.rule === 'merge' && eventTime === undefined) ctx.addIssue({ code: 'custom', path: ['rule'], message: 'the merge rule needs schema.eventTimeColumn (the later event time wins)' })
  if (d.tolerance.graceMs > 0 && eventTime === undefined) ctx.addIssue({ code: 'custom', path: ['tolerance', 'graceMs'], message: 'a grace window needs schema.eventTimeColumn' })
})

/**
 * A bearer token for the status port. Its secret comes from a file or an
 * environment variable, never from the config itself, so configs can be
 * shared and logged.
 */
const statusToken = z.object({
  /** Who holds it: approvals and rollbacks are recorded under this name. */
  name: z.string().min(1).max(128),
  role: z.enum(['viewer', 'approver', 'admin']),
  tokenFile: z.string().min(1).optional(),
  tokenEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional()
}).strict().refine(t => (t.tokenFile === undefined) !== (t.tokenEnv === undefined), { message: 'give exactly one of tokenFile or tokenEnv' })

const peer = z.object({
  region: name,
  /** Multiaddr to dial, with /p2p/<peer id> to pin the region to that identity. */
  address: z.string().min(1)
}).strict()

export const configSchema = z.object({
  /** Agents that reconcile the same datasets share a cluster name (one gossip topic). */
  cluster: name,
  region: name,
  /** Where the agent keeps its key, digest indexes and audit log. */
  dataDir: z.string().min(1),
  /** Peer key file; default <dataDir>/peer.key (created on first start). */
  keyFile: z.string().optional(),
  listen: z.array(z.string().min(1)).min(1).default(['/ip4/127.0.0.1/tcp/0']),
  peers: z.array(peer).default([]),
  status: z.object({
    host: z.string().default('127.0.0.1'),
    /** 0 picks a free port; omit the block to turn the status port off. */
    port: z.number().int().min(0).max(65535),
    /** Bearer tokens for the port's actions and audit reads; without any, actions are refused. */
    tokens: z.array(statusToken).default([])
  }).strict().optional(),
  gossip: z.object({
    /** How often each dataset's summary is published even when nothing changed. */
    intervalMs: z.number().int().min(100).max(3_600_000).default(5000)
  }).strict().default({ intervalMs: 5000 }),
  index: z.object({
    /**
     * MiB of digest-index pages kept in memory, shared by all of the agent's
     * datasets (the pages used lately first); 0 keeps none. The default holds
     * every page of a 1,000,000-row index (some 42 MiB), so a drift's pages
     * are not read from LevelDB twice on its way to the repair.
     */
    pageCacheMiB: z.number().int().min(0).max(65_536).default(64)
  }).strict().default({ pageCacheMiB: 64 }),
  validation: z.object({
    /** How often the deep pass rescans each store and checks it row by row against the index; 0 turns it off. */
    intervalMs: z.number().int().min(0).default(3_600_000)
  }).strict().default({ intervalMs: 3_600_000 }),
  sync: z.object({
    /** Shortest pause between two syncs of one dataset. */
    minIntervalMs: z.number().int().min(0).default(250),
    timeoutMs: z.number().int().min(1000).default(60_000),
    /** Syncs running at once across all datasets; the others wait their turn. */
    concurrency: z.number().int().min(1).max(256).default(4),
    /** Rows a repair may write per second into each store (0: no limit), so it yields to the replica's own traffic. */
    maxRowsPerSecond: z.number().int().min(0).default(0),
    /** Rows one exchange takes from the source at most; the rest follow in the next (bounds memory per sync). */
    maxRowsPerExchange: z.number().int().min(1).default(200_000)
  }).strict().default({ minIntervalMs: 250, timeoutMs: 60_000, concurrency: 4, maxRowsPerSecond: 0, maxRowsPerExchange: 200_000 }),
  /**
   * Who may connect and what a peer may cost; see the README's threat model.
   * The defaults keep a cluster open to any peer (as before) but bounded.
   */
  security: z.object({
    /** Peer ids that may connect, besides those pinned by /p2p/<id> in `peers`; empty: any peer that passes the other checks. */
    allowPeers: z.array(z.string().regex(/^[1-9A-HJ-NP-Za-km-z]{32,128}$/, 'must be a peer id (base58, as `converge keygen` prints)')).max(4096).default([]),
    /** The cluster's pre-shared key (swarm key format), mode 600: peers without it cannot connect at all. */
    pskFile: z.string().min(1).optional(),
    /** The same key from an environment variable instead (the swarm key text, or its 64 hex digits). */
    pskEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
    /** Refuse to start when a dataset's source of truth is a peer region without /p2p/<id> in its address. */
    requirePinnedSources: z.boolean().default(false),
    /** Open connections at most, in and out. */
    maxConnections: z.number().int().min(2).max(10_000).default(64),
    /** Sync streams one peer may have this agent serve at once (a replica runs up to sync.concurrency syncs of up to 4 partition sessions); more are refused (CONVERGE_TOO_MANY_STREAMS). */
    maxStreamsPerPeer: z.number().int().min(1).max(256).default(16),
    /**
     * Bytes a stream may hold unsent (its reader is slow) or unread before it
     * is reset. At least two sync frames (2 x 4 MiB, the protocol's frame
     * limit): one being sent and the next queued behind it.
     */
    maxBufferedBytes: z.number().int().min(2 * MAX_FRAME_BYTES + 64 * 1024).max(1024 * 1024 * 1024).default(16 * 1024 * 1024),
    /** How long a peer cut off for bad gossip is refused. */
    banMs: z.number().int().min(0).default(600_000)
  }).strict().refine(s => s.pskFile === undefined || s.pskEnv === undefined, { message: 'give at most one of pskFile or pskEnv' })
    .default({ allowPeers: [], requirePinnedSources: false, maxConnections: 64, maxStreamsPerPeer: 16, maxBufferedBytes: 16 * 1024 * 1024, banMs: 600_000 }),
  datasets: z.array(dataset).min(1)
}).strict().superRefine((c, ctx) => {
  const seen = new Set<string>()
  c.datasets.forEach((d, i) => {
    if (seen.has(d.name)) ctx.addIssue({ code: 'custom', path: ['datasets', i, 'name'], message: `duplicate dataset "${d.name}"` })
    seen.add(d.name)
  })
  c.datasets.forEach((d, i) => {
    if ('fromCatalog' in d.schema && d.store.kind !== 'postgres') ctx.addIssue({ code: 'custom', path: ['datasets', i, 'schema', 'fromCatalog'], message: 'a schema can be read from the catalog of a postgres store only' })
  })
  const regions = new Set([c.region, ...c.peers.map(p => p.region)])
  c.datasets.forEach((d, i) => d.sourceOfTruth.forEach((r, j) => {
    if (!regions.has(r)) ctx.addIssue({ code: 'custom', path: ['datasets', i, 'sourceOfTruth', j], message: `region "${r}" is neither this agent nor one of its peers` })
  }))
})

export type AgentConfig = z.infer<typeof configSchema>
export type DatasetConfig = AgentConfig['datasets'][number]
export type ConfigInput = z.input<typeof configSchema>
