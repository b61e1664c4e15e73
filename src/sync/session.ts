/**
 * One sync exchange over a frame channel: the client narrows against the
 * source of truth and returns the difference; the server answers rounds until
 * the client closes. Neither side applies anything here.
 */
import { pack } from 'msgpackr'
import { PROTOCOL_VERSION } from '../constants.ts'
import { ConvergeError, RemoteError, ReplyTooLargeError, SchemaMismatchError, ShapeOfferedError, SourceRegionMismatchError, StreamEndedError } from '../errors.ts'
import type { DatasetSchema } from '../digest/schema.ts'
import { u64ToBytes } from '../digest/hash.ts'
import type { RowCodec } from '../digest/row-codec.ts'
import type { FrameChannel } from './channel.ts'
import { KeyAnswers, keyRequests, keysMessage, type Suspect } from './by-keys.ts'
import { checkMessage, decodeFrame, errorSchema, isErrorFrame, keyedSchema, keysSchema, openedSchema, openSchema, replySchema, roundSchema, type OpenedMessage, type OpenMessage, type SyncMessage } from './messages.ts'
import { Narrowing, type NarrowingResult, type NodeRef } from './narrowing.ts'
import type { ReplicaView } from './replica-view.ts'
import { Responder } from './responder.ts'

export type VectorClock = Record<string, number>

export interface SyncStats {
  roundTrips: number
  bytesSent: number
  bytesReceived: number
}

export interface ClientSyncInit {
  dataset: string
  region: string
  codec: RowCodec
  view: ReplicaView
  clock: VectorClock
  correlationId: string
  /** This side's schema in the source's names, sent so the source can offer a comparison schema when theirs differ. */
  schema?: DatasetSchema
  /** Narrow only under this node (a partition): [level, index]. */
  at?: NodeRef
  /** Stop at this level and report its mismatched nodes instead of settling them (the partition survey). */
  surveyLevel?: number
  /** Most rows to take in this exchange; see NarrowingOptions.maxRows. */
  maxRows?: number
  /** The region the source was dialed as: an `opened` under another name ends the exchange (SourceRegionMismatchError). */
  sourceRegion?: string
  /** The row count of the source's latest gossiped summary; see NarrowingOptions.sourceCount. */
  sourceCount?: number
  /** Bytes of replies to one round held at most (default MAX_ROUND_REPLY_BYTES). */
  maxReplyBytes?: number
  /**
   * Ask about these keys (changed here lately) instead of narrowing: the
   * result is the difference on these keys only (see by-keys.ts).
   */
  suspects?: readonly Suspect[]
  signal?: AbortSignal
}

/**
 * Bytes of replies to one round a client holds at most. A source answers a
 * round in frames of about 256 KiB while `more` is set; without a ceiling a
 * peer that never stops setting it would be buffered until memory runs out.
 * 512 MiB is several million rows of a typical table: a first fetch of a
 * larger dataset into an empty replica needs sync.maxRowsPerExchange below it.
 */
export const MAX_ROUND_REPLY_BYTES = 512 * 1024 * 1024

export interface ClientSyncOutcome {
  opened: OpenedMessage
  result: NarrowingResult
  stats: SyncStats
}

async function send (channel: FrameChannel, message: SyncMessage, signal?: AbortSignal): Promise<void> {
  await channel.send(pack(message), { signal })
}

async function receive<T> (channel: FrameChannel, schema: import('zod').ZodType<T>, what: string, signal?: AbortSignal): Promise<T> {
  const value = decodeFrame(await channel.receive({ signal }), what)
  if (isErrorFrame(value)) {
    const err = checkMessage(errorSchema, value, 'error frame')
    throw new RemoteError(err.code, err.message)
  }
  return checkMessage(schema, value, what)
}

/** The frames answering one request: up to one without `more`, at most `maxBytes` (default MAX_ROUND_REPLY_BYTES) of them. */
async function receiveAnswer<T extends { more?: boolean }> (channel: FrameChannel, schema: import('zod').ZodType<T>, what: string, maxBytes = MAX_ROUND_REPLY_BYTES, signal?: AbortSignal): Promise<T[]> {
  const replies: T[] = []
  const before = channel.bytesReceived
  for (;;) {
    const reply = await receive(channel, schema, what, signal)
    replies.push(reply)
    if (reply.more !== true) return replies
    if (channel.bytesReceived - before > maxBytes) throw new ReplyTooLargeError(maxBytes)
  }
}

/** Runs the client side of one exchange and closes the channel. */
export async function runClientSync (channel: FrameChannel, init: ClientSyncInit): Promise<ClientSyncOutcome> {
  const { signal } = init
  try {
    const at = init.at === undefined ? undefined : [init.at.level, init.at.index] as [number, number]
    await send(channel, {
      t: 'open', v: PROTOCOL_VERSION, cid: init.correlationId, dataset: init.dataset, region: init.region, fp: init.codec.fingerprint, clock: init.clock,
      ...(init.schema === undefined ? {} : { schema: init.schema }), ...(at === undefined ? {} : { at })
    }, signal)
    const opened = await receive(channel, openedSchema, 'opened', signal)
    // rows are taken only from the region this side chose as its source: a peer answering under another name is not it
    if (init.sourceRegion !== undefined && opened.region !== init.sourceRegion) throw new SourceRegionMismatchError(init.sourceRegion, opened.region)
    if (opened.fp !== init.codec.fingerprint) {
      // the source compares under another schema: the caller sets up that view and opens again
      if (opened.shape !== undefined) throw new ShapeOfferedError(init.dataset, opened.shape)
      throw new SchemaMismatchError(init.dataset, init.codec.fingerprint, opened.fp)
    }
    if (init.suspects !== undefined) {
      const answers = new KeyAnswers(init.codec)
      let roundTrips = 0
      for (const part of keyRequests(init.suspects)) {
        const { message, asked } = keysMessage(part)
        await send(channel, message, signal)
        answers.accept(asked, await receiveAnswer(channel, keyedSchema, 'keyed', init.maxReplyBytes, signal))
        roundTrips++
      }
      await channel.close({ signal })
      return { opened, result: answers.done(), stats: { roundTrips, bytesSent: channel.bytesSent, bytesReceived: channel.bytesReceived } }
    }
    const narrowing = new Narrowing(init.view, init.codec, { at: init.at, surveyLevel: init.surveyLevel, maxRows: init.maxRows, sourceCount: init.sourceCount })
    let request = await narrowing.start(opened)
    while (request !== undefined) {
      await send(channel, request, signal)
      request = await narrowing.accept(await receiveAnswer(channel, replySchema, 'reply', init.maxReplyBytes, signal))
    }
    await channel.close({ signal })
    return { opened, result: narrowing.result(), stats: { roundTrips: narrowing.roundTrips, bytesSent: channel.bytesSent, bytesReceived: channel.bytesReceived } }
  } catch (err) {
    channel.abort(err as Error)
    throw err
  }
}

/** What a server needs to answer for one dataset. */
export interface ServedDataset {
  /** Set when the client's schema differs compatibly: the comparison schema served (codec and view are under it). */
  shape?: DatasetSchema
  region: string
  codec: RowCodec
  view: ReplicaView
  clock: () => VectorClock
}

export interface ServeSyncInit {
  /** Finds the dataset the client opened; throws a ConvergeError (sent back as an error frame) when it cannot be served. */
  resolve: (open: OpenMessage) => ServedDataset | Promise<ServedDataset>
  signal?: AbortSignal
  /** Called once the open is accepted, with the client's clock and correlation id. */
  onOpen?: (open: OpenMessage) => void
}

/**
 * Serves one exchange until the client closes. A malformed or refused request
 * gets an error frame with a stable code and ends this stream only.
 */
export async function serveSync (channel: FrameChannel, init: ServeSyncInit): Promise<{ open?: OpenMessage, rounds: number }> {
  const { signal } = init
  let open: OpenMessage | undefined
  let rounds = 0
  try {
    open = await receive(channel, openSchema, 'open', signal)
    const served = await init.resolve(open)
    if (open.fp !== served.codec.fingerprint && served.shape === undefined) throw new SchemaMismatchError(open.dataset, served.codec.fingerprint, open.fp)
    init.onOpen?.(open)
    const responder = new Responder(served.view, served.codec)
    const tree = served.view.tree
    const at = open.at === undefined ? { level: 0, index: 0 } : { level: open.at[0], index: open.at[1] }
    const children = responder.childrenOf(at)
    await send(channel, {
      t: 'opened', v: PROTOCOL_VERSION, region: served.region, fp: served.codec.fingerprint, clock: served.clock(),
      depth: tree.depth, count: tree.count(at.level, at.index), sum: u64ToBytes(tree.sum(at.level, at.index)), children,
      ...(served.shape === undefined ? {} : { shape: served.shape })
    }, signal)
    for (;;) {
      let frame: Uint8Array
      try {
        frame = await channel.receive({ signal })
      } catch (err) {
        if (err instanceof StreamEndedError) break
        throw err
      }
      const message = decodeFrame(frame, 'round')
      rounds++
      // a request by key, or a round of narrowing
      const replies = (message as { t?: unknown } | null)?.t === 'keys'
        ? responder.answerKeys(checkMessage(keysSchema, message, 'keys'), { signal })
        : responder.answer(checkMessage(roundSchema, message, 'round'), { signal })
      for await (const reply of replies) await send(channel, reply, signal)
    }
    await channel.close({ signal })
    return { open, rounds }
  } catch (err) {
    if (err instanceof ConvergeError && !(err instanceof StreamEndedError)) {
      // tell the client why, then end this stream; the server goes on serving others
      try { await send(channel, { t: 'error', code: err.code, message: err.message.slice(0, 1024) }, signal); await channel.close({ signal }) } catch { channel.abort(err) }
    } else {
      channel.abort(err as Error)
    }
    throw err
  }
}

