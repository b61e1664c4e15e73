/**
 * A TCP proxy on loopback that one agent dials to reach another, so the link
 * between them can be made slow, capped, flaky, half-open or cut, for real:
 * the agents' own sockets see the delays, stalls and resets.
 *
 * Each direction of each connection is a pipe with a queue. A chunk read at
 * time t is sliced (16 KiB) and each slice is delivered at
 *   max(previous delivery, t_sent + rtt/2 + jitter [+ 200 ms when "lost"])
 * where t_sent is when the bandwidth cap lets the slice onto the wire (the
 * link is busy len/bandwidth per slice). Order is kept, as TCP keeps it;
 * "loss" is what packet loss looks like above TCP: a retransmission delay,
 * with head-of-line blocking. A queue past its high-water mark pauses the
 * reading side, so a slow link pushes back on the sender as TCP would.
 *
 *   up         forward, shaped
 *   silent     a partition: nothing is delivered (queued bytes wait, new
 *              connections are held unanswered); on heal, held bytes flow
 *              and held connections go through, unless their ends gave up
 *   reset      refuse: every connection is reset (RST), new ones too
 *   half-open  the far side forgets each open connection (its socket is
 *              closed); the near side's stays open and its bytes go nowhere,
 *              until the fault ends and it is reset
 */
import { createServer, Socket, type Server } from 'node:net'

export type LinkState = 'up' | 'silent' | 'reset' | 'half-open'

export interface LinkShape {
  rttMs: number
  jitterMs: number
  /** Bytes per second each way; undefined: uncapped. */
  bandwidth?: number
  /** Share of slices delayed by a retransmission timeout. */
  loss: number
}

export const CLEAR_SHAPE: LinkShape = { rttMs: 0, jitterMs: 0, loss: 0 }

const SLICE_BYTES = 16 * 1024
const RETRANSMIT_MS = 200
const HIGH_WATER = 1024 * 1024
const LOW_WATER = 256 * 1024

export interface LinkStats { connections: number, open: number, bytesForward: number, bytesBack: number, resets: number, refused: number }

interface Slice { at: number, data: Buffer }

/** One direction of one connection. */
class Pipe {
  private readonly queue: Slice[] = []
  private queued = 0
  private lastAt = 0
  private wireFreeAt = 0
  private timer: NodeJS.Timeout | undefined
  private waitingDrain = false

  constructor (private readonly from: Socket, private readonly to: Socket, private readonly link: LinkProxy, private readonly count: (n: number) => void) {
    from.on('data', (chunk: Buffer) => { this.take(chunk) })
  }

  private take (chunk: Buffer): void {
    const state = this.link.state
    if (state === 'half-open') return // into the void
    const shape = this.link.shape
    for (let off = 0; off < chunk.length; off += SLICE_BYTES) {
      const data = chunk.subarray(off, Math.min(chunk.length, off + SLICE_BYTES))
      const now = Date.now()
      let sent = now
      if (shape.bandwidth !== undefined) {
        sent = Math.max(now, this.wireFreeAt) + data.length * 1000 / shape.bandwidth
        this.wireFreeAt = sent
      }
      let at = sent + shape.rttMs / 2 + (shape.jitterMs > 0 ? this.link.random() * shape.jitterMs : 0)
      if (shape.loss > 0 && this.link.random() < shape.loss) at += RETRANSMIT_MS
      at = Math.max(at, this.lastAt)
      this.lastAt = at
      this.queue.push({ at, data })
      this.queued += data.length
    }
    if (this.queued > HIGH_WATER) this.from.pause()
    this.schedule()
  }

  /** Delivers what is due; called again when more is due or the link comes back. */
  schedule (): void {
    if (this.timer !== undefined || this.waitingDrain || this.link.state !== 'up') return
    const head = this.queue[0]
    if (head === undefined) return
    const wait = head.at - Date.now()
    if (wait > 0) { this.timer = setTimeout(() => { this.timer = undefined; this.deliver() }, wait); return }
    this.deliver()
  }

  private deliver (): void {
    if (this.link.state !== 'up' || this.to.destroyed) return
    const now = Date.now()
    while (this.queue[0] !== undefined && this.queue[0].at <= now) {
      const { data } = this.queue.shift()!
      this.queued -= data.length
      this.count(data.length)
      if (!this.to.write(data)) {
        this.waitingDrain = true
        this.to.once('drain', () => { this.waitingDrain = false; this.schedule() })
        break
      }
    }
    if (this.queued < LOW_WATER && this.from.isPaused()) this.from.resume()
    this.schedule()
  }

  /** After a silent spell: what waited is due now (plus the link's delay), not all at once long ago. */
  resumeAfterSilence (): void {
    const base = Date.now() + this.link.shape.rttMs / 2
    for (const s of this.queue) s.at = Math.max(s.at, base)
    this.lastAt = Math.max(this.lastAt, base)
    this.schedule()
  }

  stop (): void { if (this.timer !== undefined) clearTimeout(this.timer); this.timer = undefined }
}

interface Conn { client: Socket, upstream?: Socket, pipes: Pipe[], held: boolean }

export interface LinkProxyInit {
  /** Where connections go: the dialed agent's own listen port on 127.0.0.1 (may be set later, before the first connection). */
  targetPort?: number
  /** Names the link in stats and errors: "eu-west→us-east". */
  name: string
  random?: () => number
}

export class LinkProxy {
  readonly name: string
  state: LinkState = 'up'
  shape: LinkShape = { ...CLEAR_SHAPE }
  readonly random: () => number
  private readonly server: Server
  private readonly conns = new Set<Conn>()
  targetPort: number | undefined
  private resetTimer: NodeJS.Timeout | undefined
  readonly stats: LinkStats = { connections: 0, open: 0, bytesForward: 0, bytesBack: 0, resets: 0, refused: 0 }
  port = 0

  constructor (init: LinkProxyInit) {
    this.name = init.name
    this.targetPort = init.targetPort
    this.random = init.random ?? Math.random
    this.server = createServer({ pauseOnConnect: true }, socket => { this.accept(socket) })
  }

  async listen (): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(0, '127.0.0.1', () => { this.server.off('error', reject); resolve() })
    })
    const address = this.server.address()
    if (address === null || typeof address === 'string') throw new Error(`link ${this.name}: no port`)
    this.port = address.port
    return this.port
  }

  private accept (client: Socket): void {
    client.on('error', () => undefined)
    if (this.state === 'reset') { this.stats.refused++; client.resetAndDestroy(); return }
    this.stats.connections++
    this.stats.open++
    const conn: Conn = { client, pipes: [], held: false }
    this.conns.add(conn)
    client.once('close', () => { this.stats.open--; this.conns.delete(conn); this.drop(conn) })
    if (this.state === 'silent' || this.state === 'half-open') { conn.held = true; return } // unanswered, as behind a partition
    this.connect(conn)
  }

  private connect (conn: Conn): void {
    conn.held = false
    const upstream = new Socket()
    conn.upstream = upstream
    upstream.on('error', () => undefined)
    upstream.setNoDelay(true)
    conn.client.setNoDelay(true)
    // half-open: the far side's close is exactly what the near side must not hear of
    upstream.once('close', () => { if (!conn.client.destroyed && this.state !== 'half-open') conn.client.destroy() })
    if (this.targetPort === undefined) { conn.client.destroy(); return }
    upstream.connect(this.targetPort, '127.0.0.1', () => {
      conn.pipes.push(
        new Pipe(conn.client, upstream, this, n => { this.stats.bytesForward += n }),
        new Pipe(upstream, conn.client, this, n => { this.stats.bytesBack += n })
      )
      // an end closing its side ends the other's once what was sent has gone through
      conn.client.once('end', () => { upstream.end() })
      upstream.once('end', () => { conn.client.end() })
      conn.client.resume()
    })
  }

  private drop (conn: Conn): void {
    for (const p of conn.pipes) p.stop()
    if (conn.upstream !== undefined && !conn.upstream.destroyed) conn.upstream.destroy()
  }

  /** Changes the shape of the link from now on (queued bytes keep their times). */
  setShape (shape: Partial<LinkShape>): void { this.shape = { ...this.shape, ...shape } }

  /** Resets (RST) every open connection now. */
  resetAll (): void {
    for (const conn of [...this.conns]) {
      this.stats.resets++
      conn.client.resetAndDestroy()
      conn.upstream?.resetAndDestroy()
    }
  }

  /** Resets every open connection every `ms` until stopped with `resetEvery(undefined)`. */
  resetEvery (ms: number | undefined): void {
    if (this.resetTimer !== undefined) clearInterval(this.resetTimer)
    this.resetTimer = ms === undefined ? undefined : setInterval(() => { this.resetAll() }, ms)
  }

  setState (state: LinkState): void {
    const was = this.state
    if (was === state) return
    this.state = state
    if (state === 'reset') this.resetAll()
    if (state === 'half-open') {
      // the far side forgets: its end closes; ours stays, talking to nobody
      for (const conn of this.conns) if (conn.upstream !== undefined && !conn.upstream.destroyed) conn.upstream.destroy()
    }
    if (state === 'up') {
      if (was === 'half-open') {
        // what the near side sent reaches a host that knows no such connection: it answers with a reset
        for (const conn of [...this.conns]) if (!conn.held) { this.stats.resets++; conn.client.resetAndDestroy() }
      }
      for (const conn of [...this.conns]) {
        if (conn.held && !conn.client.destroyed) this.connect(conn)
        else for (const p of conn.pipes) p.resumeAfterSilence()
      }
    }
  }

  async close (): Promise<void> {
    this.resetEvery(undefined)
    for (const conn of [...this.conns]) { conn.client.destroy(); this.drop(conn) }
    await new Promise<void>(resolve => this.server.close(() => resolve()))
  }
}
