import { createServer, type Server } from 'node:net'

async function listenAny (): Promise<Server> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => { resolve(server) })
  })
}

function portOf (server: Server): number {
  const address = server.address()
  if (typeof address !== 'object' || address === null) throw new Error('no port')
  return address.port
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort (): Promise<number> {
  return (await freePorts(1))[0]!
}

/**
 * `n` distinct TCP ports on 127.0.0.1 that were free a moment ago: all are
 * held open until every one is picked, so no two are the same (one at a
 * time, a port let go could be handed out again at once).
 */
export async function freePorts (n: number): Promise<number[]> {
  const servers: Server[] = []
  try {
    for (let i = 0; i < n; i++) servers.push(await listenAny())
    return servers.map(portOf)
  } finally {
    await Promise.all(servers.map(async s => await new Promise(resolve => s.close(resolve))))
  }
}
