import { once } from 'node:events'
import { createServer, Socket, type Server } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { LinkProxy } from '../../cluster/link-proxy.ts'

/** A TCP echo server on loopback. */
async function echoServer (): Promise<{ server: Server, port: number, sockets: Socket[] }> {
  const sockets: Socket[] = []
  const server = createServer(s => { sockets.push(s); s.on('error', () => undefined); s.pipe(s) })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { server, port: (server.address() as { port: number }).port, sockets }
}

async function connect (port: number): Promise<Socket> {
  const s = new Socket()
  s.on('error', () => undefined)
  s.connect(port, '127.0.0.1')
  await once(s, 'connect')
  return s
}

/** Sends `bytes` and resolves when as many have come back, with the time it took. */
async function roundTrip (s: Socket, bytes: number): Promise<number> {
  const t = performance.now()
  let got = 0
  const done = new Promise<void>(resolve => { const on = (d: Buffer): void => { got += d.length; if (got >= bytes) { s.off('data', on); resolve() } }; s.on('data', on) })
  s.write(Buffer.alloc(bytes, 7))
  await done
  return performance.now() - t
}

describe('link proxy', () => {
  const cleanups: Array<() => Promise<unknown> | unknown> = []
  afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c() })

  async function setUp (): Promise<{ proxy: LinkProxy, echo: Awaited<ReturnType<typeof echoServer>> }> {
    const echo = await echoServer()
    cleanups.push(async () => { for (const s of echo.sockets) s.destroy(); await new Promise(resolve => echo.server.close(resolve)) })
    const proxy = new LinkProxy({ name: 'a→b', targetPort: echo.port })
    await proxy.listen()
    cleanups.push(async () => { await proxy.close() })
    return { proxy, echo }
  }

  it('forwards both ways and counts the bytes', async () => {
    const { proxy } = await setUp()
    const s = await connect(proxy.port)
    cleanups.push(() => s.destroy())
    expect(await roundTrip(s, 1000)).toBeLessThan(200)
    expect(proxy.stats).toMatchObject({ connections: 1, open: 1, bytesForward: 1000, bytesBack: 1000 })
  })

  it('adds the round-trip time and holds to the bandwidth cap', async () => {
    const { proxy } = await setUp()
    proxy.setShape({ rttMs: 100 })
    const s = await connect(proxy.port)
    cleanups.push(() => s.destroy())
    // through an echo the bytes cross the link twice: one full round trip
    const rtt = await roundTrip(s, 10)
    expect(rtt).toBeGreaterThanOrEqual(95)
    expect(rtt).toBeLessThan(400)
    // 8 Mbit/s is 1 MB/s each way; 400 kB out and back: at least 0.4 s (the directions overlap), plus the rtt
    proxy.setShape({ rttMs: 0, bandwidth: 1_000_000 })
    const capped = await roundTrip(s, 400_000)
    expect(capped).toBeGreaterThanOrEqual(380)
    expect(capped).toBeLessThan(2000)
  })

  it('a silent cut delivers nothing until it heals, then the held bytes go through', async () => {
    const { proxy } = await setUp()
    const s = await connect(proxy.port)
    cleanups.push(() => s.destroy())
    await roundTrip(s, 10)
    proxy.setState('silent')
    let got = 0
    s.on('data', d => { got += (d as Buffer).length })
    s.write(Buffer.alloc(100, 1))
    // a new connection is accepted but never answered
    const held = await connect(proxy.port)
    cleanups.push(() => held.destroy())
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(got).toBe(0)
    proxy.setState('up')
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(got).toBe(100)
    expect(await roundTrip(held, 5)).toBeLessThan(200)
  })

  it('a reset cut resets open connections and refuses new ones', async () => {
    const { proxy } = await setUp()
    const s = await connect(proxy.port)
    // (events.once would reject on the error that comes first)
    const closed = new Promise(resolve => s.once('close', resolve))
    const errored = new Promise<NodeJS.ErrnoException>(resolve => s.once('error', resolve))
    proxy.setState('reset')
    expect((await errored).code).toBe('ECONNRESET')
    await closed
    const again = new Socket()
    again.on('error', () => undefined)
    cleanups.push(() => again.destroy())
    const refused = new Promise<NodeJS.ErrnoException>(resolve => again.once('error', resolve))
    again.connect(proxy.port, '127.0.0.1')
    expect((await refused).code).toBe('ECONNRESET')
    expect(proxy.stats.refused).toBe(1)
  })

  it('half-open: the far side loses the connection, the near side hears nothing until the fault ends in a reset', async () => {
    const { proxy, echo } = await setUp()
    const s = await connect(proxy.port)
    await roundTrip(s, 10)
    const far = echo.sockets[0]!
    const farClosed = once(far, 'close')
    proxy.setState('half-open')
    await farClosed
    let got = 0
    s.on('data', d => { got += (d as Buffer).length })
    s.write(Buffer.alloc(50, 2))
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(got).toBe(0)
    expect(s.destroyed).toBe(false)
    const errored = new Promise<NodeJS.ErrnoException>(resolve => s.once('error', resolve))
    proxy.setState('up')
    expect((await errored).code).toBe('ECONNRESET')
  })

  it('resets every open connection on a period', async () => {
    const { proxy } = await setUp()
    const s = await connect(proxy.port)
    const errored = new Promise<NodeJS.ErrnoException>(resolve => s.once('error', resolve))
    proxy.resetEvery(100)
    cleanups.push(() => { proxy.resetEvery(undefined) })
    expect((await errored).code).toBe('ECONNRESET')
    expect(proxy.stats.resets).toBeGreaterThanOrEqual(1)
  })
})
