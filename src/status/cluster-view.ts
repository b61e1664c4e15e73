/**
 * The cluster's view from one agent: each connected peer is asked for its
 * status report over libp2p (`/converge/status/1`), so an operator who can
 * reach one status port sees every agent, without reaching every port.
 *
 * The protocol is one frame: the answering side writes its report as JSON in
 * one length-prefixed frame (the sync framing) and closes. Both sides bound
 * it: the frame is at most MAX_STATUS_BYTES (a larger report is cut down to
 * its per-dataset essentials before it is sent, and refused when read), and
 * each side gives up after a timeout. A peer that does not answer in time is
 * listed with its error; the others are shown all the same.
 */
import type { Stream } from '@libp2p/interface'
import pLimit from 'p-limit'
import { z } from 'zod'
import { ConvergeError } from '../errors.ts'
import { streamChannel, type FrameChannel } from '../sync/channel.ts'

export const STATUS_PROTOCOL = '/converge/status/1'
/** A report is a few KiB; a thousand partitions in error are well under this. */
export const MAX_STATUS_BYTES = 1024 * 1024
/** How long the asking side waits for one peer's answer, and the answering side for its write. */
export const PEER_STATUS_TIMEOUT_MS = 3000
/** Peers asked at once. */
const ASK_CONCURRENCY = 8
/** Concurrent status streams a peer may open to this agent. */
export const MAX_INBOUND_STATUS_STREAMS = 4

const enc = new TextEncoder()
const dec = new TextDecoder()

/** What is checked of a peer's answer before it is shown: an object naming its region, with a list of datasets. */
const peerReport = z.object({
  region: z.string().min(1).max(128),
  peerId: z.string().max(128).nullable().optional(),
  datasets: z.array(z.object({ name: z.string().max(128), state: z.string().max(64) }).passthrough()).max(10_000)
}).passthrough()

export type PeerReport = z.infer<typeof peerReport>

export interface ClusterMember {
  peerId: string | null
  region: string | null
  /** This agent's own report, or the peer's answer. */
  self: boolean
  ok: boolean
  /** Milliseconds the peer took to answer. */
  ms?: number
  report?: Record<string, unknown>
  error?: { code: string, message: string }
}

export interface ClusterView {
  askedAt: number
  by: { region: string, peerId: string | null }
  members: ClusterMember[]
}

const json = (value: unknown): string => JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v))

/**
 * The report as one frame. Over the bound, per-dataset details that can be
 * long (partitions, decisions, validation) are dropped and the report says so.
 */
export function encodeReport (report: Record<string, unknown>, max = MAX_STATUS_BYTES): Uint8Array {
  const full = enc.encode(json(report))
  if (full.length <= max) return full
  const datasets = Array.isArray(report.datasets) ? report.datasets as Array<Record<string, unknown>> : []
  const trimmed = enc.encode(json({
    ...report,
    truncated: true,
    datasets: datasets.map(d => ({ name: d.name, state: d.state, sourceOfTruth: d.sourceOfTruth, root: d.root, sourceRoot: d.sourceRoot, lastError: typeof d.lastError === 'string' ? d.lastError.slice(0, 500) : d.lastError, counters: d.counters }))
  }))
  if (trimmed.length <= max) return trimmed
  return enc.encode(json({ region: report.region, peerId: report.peerId, truncated: true, datasets: datasets.slice(0, 1000).map(d => ({ name: String(d.name).slice(0, 128), state: String(d.state).slice(0, 64) })) }))
}

/** Answers one status stream with this agent's report; never throws. */
export async function answerStatus (stream: Stream, report: () => Record<string, unknown>): Promise<void> {
  const channel = streamChannel(stream, MAX_STATUS_BYTES)
  const signal = AbortSignal.timeout(PEER_STATUS_TIMEOUT_MS)
  try {
    await channel.send(encodeReport(report()), { signal })
    await channel.close({ signal })
  } catch (err) {
    channel.abort(err as Error)
  }
}

/** Reads a peer's report from a status stream opened to it; throws a ConvergeError with a stable code. */
export async function readPeerReport (channel: FrameChannel, signal: AbortSignal): Promise<PeerReport> {
  try {
    const frame = await channel.receive({ signal })
    let value: unknown
    try { value = JSON.parse(dec.decode(frame)) } catch {
      throw new ConvergeError('CONVERGE_MALFORMED_MESSAGE', 'the peer\'s status is not JSON')
    }
    const parsed = peerReport.safeParse(value)
    if (!parsed.success) throw new ConvergeError('CONVERGE_MALFORMED_MESSAGE', `the peer's status is malformed: ${parsed.error.issues.map(i => `${i.path.join('.') || '(top)'}: ${i.message}`).slice(0, 3).join('; ')}`)
    return parsed.data
  } finally {
    await channel.close({ signal }).catch(() => { channel.abort(new Error('status read done')) })
  }
}

export interface AskInit {
  self: Record<string, unknown>
  /** Peers to ask: the connected ones. */
  peers: Array<{ peerId: string, region: string | null }>
  /** Opens a status stream to a peer. */
  open: (peerId: string, signal: AbortSignal) => Promise<FrameChannel>
  timeoutMs?: number
}

/** This agent's report and each peer's, asked side by side. */
export async function gatherClusterView (init: AskInit): Promise<ClusterView> {
  const timeoutMs = init.timeoutMs ?? PEER_STATUS_TIMEOUT_MS
  const limit = pLimit(ASK_CONCURRENCY)
  const region = String(init.self.region)
  const selfId = typeof init.self.peerId === 'string' ? init.self.peerId : null
  const asked = await Promise.all(init.peers.map(async p => await limit(async (): Promise<ClusterMember> => {
    const t0 = Date.now()
    const signal = AbortSignal.timeout(timeoutMs)
    try {
      const report = await readPeerReport(await init.open(p.peerId, signal), signal)
      return { peerId: p.peerId, region: report.region, self: false, ok: true, ms: Date.now() - t0, report }
    } catch (err) {
      const code = signal.aborted ? 'CONVERGE_PEER_TIMEOUT' : (err as { code?: string }).code ?? 'CONVERGE_PEER_UNREACHABLE'
      const message = signal.aborted ? `no answer within ${timeoutMs} ms` : (err as Error).message
      return { peerId: p.peerId, region: p.region, self: false, ok: false, ms: Date.now() - t0, error: { code, message } }
    }
  })))
  return {
    askedAt: Date.now(),
    by: { region, peerId: selfId },
    members: [{ peerId: selfId, region, self: true, ok: true, ms: 0, report: init.self }, ...asked.sort((a, b) => String(a.region).localeCompare(String(b.region)))]
  }
}
