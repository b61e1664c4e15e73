/**
 * Messages of the sync protocol (/converge/sync/1). Every frame is one msgpack
 * map with a `t` field; it is size-bounded by the framing and schema-checked
 * here before any field is used.
 *
 *   client → server  open     dataset, region, schema fingerprint, vector clock, correlation id, optional start node
 *   server → client  opened   region, fingerprint, clock, tree depth, the root (or the node `open.at` names) and its children
 *   client → server  round    nodes to expand, nodes to fetch whole, nodes to settle row by row (with the client's entry hashes)
 *   server → client  reply    children sums, node sums, unmatched positions, rows; `more` while rows keep coming
 *   client → server  keys     keys suspected of drift (changed here lately), with this side's entry hash of each held here
 *   server → client  keyed    the SoT's rows for those keys that differ, in the order asked, and which of them it lacks; `more` while rows keep coming
 *   either           error    a stable code and a message, then the stream closes
 */
import { Unpackr } from 'msgpackr'
import { z } from 'zod'
import { MAX_TREE_DEPTH, PROTOCOL_VERSION } from '../constants.ts'
import { MalformedMessageError } from '../errors.ts'
import { checkMsgpackShape } from '../security/msgpack-shape.ts'
import { COLUMN_TYPES, type DatasetSchema } from '../digest/schema.ts'
import { formIssues } from '../digest/column-forms.ts'
import { TIME_PRECISIONS } from '../digest/timestamp.ts'

const bytes = z.custom<Uint8Array>(v => v instanceof Uint8Array, { message: 'expected bytes' })
const sum8 = bytes.refine(b => b.length === 8, { message: 'expected 8 bytes' })
const name = z.string().min(1).max(128)
const level = z.number().int().min(0).max(MAX_TREE_DEPTH)
const count = z.number().int().min(0).max(2 ** 32 - 1)
export const vectorClockSchema = z.record(name, z.number().int().nonnegative())
  .refine(c => Object.keys(c).length <= 1024, { message: 'vector clock has more than 1024 regions' })

/** A dataset schema on the wire, bounded: the replica's own in `open`, the comparison schema in `opened`. */
export const schemaWire = z.object({
  version: z.number().int().min(0).max(2 ** 31),
  columns: z.array(z.object({ name, type: z.enum(COLUMN_TYPES), nullable: z.boolean().optional(), precision: z.enum(TIME_PRECISIONS).optional(), keepScale: z.boolean().optional(), keepText: z.boolean().optional() })
    .superRefine((c, ctx) => { for (const issue of formIssues(c)) ctx.addIssue({ code: 'custom', path: [issue.field], message: issue.message }) })).min(1).max(1024),
  primaryKey: z.array(name).min(1).max(64),
  ignoreColumns: z.array(name).max(1024),
  eventTimeColumn: name.optional(),
  partitionColumn: name.optional()
})

/** A schema as sent: fields that are not set are left out (msgpack would carry them as nil, which the check refuses). */
export function wireSchema (schema: DatasetSchema): DatasetSchema {
  return {
    version: schema.version,
    columns: schema.columns.map(c => ({
      name: c.name,
      type: c.type,
      ...(c.nullable === undefined ? {} : { nullable: c.nullable }),
      ...(c.precision === undefined ? {} : { precision: c.precision }),
      ...(c.keepScale === undefined ? {} : { keepScale: c.keepScale }),
      ...(c.keepText === undefined ? {} : { keepText: c.keepText })
    })),
    primaryKey: [...schema.primaryKey],
    ignoreColumns: [...schema.ignoreColumns],
    ...(schema.eventTimeColumn === undefined ? {} : { eventTimeColumn: schema.eventTimeColumn }),
    ...(schema.partitionColumn === undefined ? {} : { partitionColumn: schema.partitionColumn })
  }
}

export const openSchema = z.object({
  t: z.literal('open'),
  v: z.literal(PROTOCOL_VERSION),
  cid: z.string().min(1).max(64),
  dataset: name,
  region: name,
  fp: z.string().max(64),
  clock: vectorClockSchema,
  /**
   * The client's schema in the source's column names, sent when its
   * fingerprint may differ from the source's: the source then serves the
   * rows under the comparison schema of the two, or refuses incompatible ones.
   */
  schema: schemaWire.optional(),
  /** Start at this node (a partition) instead of the root: [level, index]. */
  at: z.tuple([level, z.number().int().min(0)]).refine(([l, i]) => i < 16 ** l, { message: 'node index outside its level' }).optional()
})

export const openedSchema = z.object({
  t: z.literal('opened'),
  v: z.literal(PROTOCOL_VERSION),
  region: name,
  fp: z.string().max(64),
  clock: vectorClockSchema,
  depth: z.number().int().min(1).max(MAX_TREE_DEPTH),
  /** When the schemas differ compatibly: the comparison schema this exchange uses (its fingerprint is `fp`). */
  shape: schemaWire.optional(),
  /** Count, sum and child sums of the node asked for in `open.at`, or of the root. */
  count,
  sum: sum8,
  children: bytes
})

const nodeSetEntry = z.tuple([level, bytes])

export const roundSchema = z.object({
  t: z.literal('round'),
  /** Nodes whose children's sums are wanted. */
  expand: z.array(nodeSetEntry).max(MAX_TREE_DEPTH + 1).default([]),
  /** Bytes of each child sum in the answer: 2 while few nodes are compared, 3 when many are, 8 to look again at full width. */
  sumBytes: z.union([z.literal(2), z.literal(3), z.literal(8)]).default(3),
  /** Nodes empty here: send every row under them. */
  fetchAll: z.array(nodeSetEntry).max(MAX_TREE_DEPTH + 1).default([]),
  /**
   * Nodes to settle row by row, grouped by level and hash width: [level, width, reconcile block].
   * The SoT answers with its rows that match none of this side's entry hashes
   * and, per node, the positions of the hashes that match none of its rows.
   */
  reconcile: z.array(z.tuple([level, z.union([z.literal(2), z.literal(3), z.literal(8)]), bytes])).max(3 * (MAX_TREE_DEPTH + 1)).default([])
})

export const replySchema = z.object({
  t: z.literal('reply'),
  /** Sums of the children of every expanded node, in request order, `sumBytes` each. */
  children: bytes.optional(),
  /** For each fetch-all node, in request order: [count, sum] of the rows sent. */
  nodes: z.array(z.tuple([count, sum8])).optional(),
  /** Reconciled block: per reconciled node, in request order, its count, full sum and the unmatched positions. */
  reconciled: bytes.optional(),
  rows: z.array(bytes).optional(),
  more: z.boolean().optional()
})

/** Keys one `keys` request names at most (the request fits well inside a frame at up to 64 bytes a key). */
export const MAX_KEYS_PER_REQUEST = 16_384

/**
 * The keys this side changed lately (its suspects), asked about by key
 * instead of by narrowing: `held` are keys held here, with this side's entry
 * hash of each (8 bytes each, in order, in `entries`); `absent` are keys
 * deleted here. The SoT answers with its rows for the held keys whose entry
 * differs and for the absent keys it has, and the positions in `held` of the
 * keys it lacks.
 */
export const keysSchema = z.object({
  t: z.literal('keys'),
  held: z.array(bytes).max(MAX_KEYS_PER_REQUEST).default([]),
  entries: bytes.default(new Uint8Array()),
  absent: z.array(bytes).max(MAX_KEYS_PER_REQUEST).default([])
}).refine(m => m.held.length + m.absent.length <= MAX_KEYS_PER_REQUEST, { message: `more than ${MAX_KEYS_PER_REQUEST} keys` })
  .refine(m => m.entries.length === 8 * m.held.length, { message: 'entries: expected 8 bytes per held key' })

export const keyedSchema = z.object({
  t: z.literal('keyed'),
  rows: z.array(bytes).optional(),
  /** Positions in `held` of the keys the SoT lacks, 4 bytes each (big-endian), ascending; in the last frame only. */
  gone: bytes.refine(b => b.length % 4 === 0, { message: 'expected 4 bytes per position' }).optional(),
  more: z.boolean().optional()
})

export const errorSchema = z.object({
  t: z.literal('error'),
  code: z.string().max(64),
  message: z.string().max(1024)
})

export type OpenMessage = z.infer<typeof openSchema>
export type OpenedMessage = z.infer<typeof openedSchema>
export type RoundMessage = z.input<typeof roundSchema>
export type ParsedRound = z.infer<typeof roundSchema>
export type ReplyMessage = z.infer<typeof replySchema>
export type KeysMessage = z.input<typeof keysSchema>
export type ParsedKeys = z.infer<typeof keysSchema>
export type KeyedMessage = z.infer<typeof keyedSchema>
export type ErrorMessage = z.infer<typeof errorSchema>
export type SyncMessage = OpenMessage | OpenedMessage | RoundMessage | ReplyMessage | KeysMessage | KeyedMessage | ErrorMessage

/** The wire decoder: no records or extensions beyond plain msgpack, 64-bit integers as bigint. */
const wireUnpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint' })

/**
 * Deepest nesting of any message: `open` carries a schema whose columns are
 * maps in an array in a map in the message (4); the rest leaves room to grow.
 */
export const MAX_MESSAGE_DEPTH = 8

/**
 * Decodes one frame's msgpack body; throws MalformedMessageError on bytes that
 * are not plain msgpack, declare more than they hold or carry extension types,
 * and MessageTooDeepError on nesting past MAX_MESSAGE_DEPTH, all before the
 * decoder runs.
 */
export function decodeFrame (frame: Uint8Array, what: string): unknown {
  checkMsgpackShape(frame, what, { maxDepth: MAX_MESSAGE_DEPTH })
  try {
    return wireUnpackr.unpack(frame)
  } catch (err) {
    throw new MalformedMessageError(`${what}: not valid msgpack`, { cause: err })
  }
}

/** Checks a decoded value against a message schema; throws MalformedMessageError naming the first problem. */
export function checkMessage<S extends z.ZodType> (schema: S, value: unknown, what: string): z.infer<S> {
  const parsed = schema.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new MalformedMessageError(`${what}: ${issue === undefined ? 'invalid' : `${issue.path.join('.') || 'message'}: ${issue.message}`}`)
  }
  return parsed.data
}

/** Whether a decoded value is an error frame. */
export function isErrorFrame (value: unknown): boolean {
  return value !== null && typeof value === 'object' && (value as { t?: unknown }).t === 'error'
}
