/**
 * The agent's libp2p listen addresses, checked before its index is built:
 * libp2p listens only once the datasets are set up, which for a large first
 * build is minutes in, and a port another process holds would only show
 * then. Each TCP address with a fixed port is bound and let go at once.
 * (Another process may still take the port in between; libp2p's own error
 * is then said the same way, by listenFailure.)
 */
import { createServer } from 'node:net'
import { multiaddr } from '@multiformats/multiaddr'
import { AddressInUseError } from '../errors.ts'

const SETTING = '`listen` in the config'

/** Throws AddressInUseError for the first fixed TCP listen address another process holds. */
export async function checkListenAddresses (listen: readonly string[], signal?: AbortSignal): Promise<void> {
  for (const address of listen) {
    signal?.throwIfAborted()
    const parts = multiaddr(address).getComponents()
    const ip = parts.find(c => c.name === 'ip4' || c.name === 'ip6')?.value
    const port = Number(parts.find(c => c.name === 'tcp')?.value)
    if (ip === undefined || !Number.isInteger(port) || port === 0) continue
    await new Promise<void>((resolve, reject) => {
      const probe = createServer()
      probe.once('error', (err: NodeJS.ErrnoException) => {
        // anything else (an address not of this host) is left for libp2p to say
        if (err.code === 'EADDRINUSE') reject(new AddressInUseError('the listen address', address, SETTING, { cause: err })); else resolve()
      })
      probe.listen({ host: ip, port, exclusive: true }, () => probe.close(() => resolve()))
    })
  }
}

/** libp2p's failure to listen, as AddressInUseError when a port was taken; other errors as they are. */
export function listenFailure (err: unknown, listen: readonly string[]): unknown {
  const text = String((err as Error)?.message ?? err)
  if (!text.includes('EADDRINUSE')) return err
  const address = listen.find(a => text.includes(a)) ?? listen.join(', ')
  return new AddressInUseError('the listen address', address, SETTING, { cause: err })
}
