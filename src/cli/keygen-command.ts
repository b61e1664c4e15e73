import { createPeerKeyFile, peerIdOf } from '../net/peer-key.ts'

export async function keygenCommand (opts: { out: string }): Promise<void> {
  const key = await createPeerKeyFile(opts.out)
  process.stdout.write(`${peerIdOf(key)}\n`)
}
