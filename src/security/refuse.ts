/**
 * Refusing a sync stream before its exchange starts (too many streams from
 * one peer): the peer gets an error frame with the stable code, as for any
 * refused exchange, and the stream ends.
 */
import { pack } from 'msgpackr'
import type { ConvergeError } from '../errors.ts'
import type { FrameChannel } from '../sync/channel.ts'

export async function refuseStream (channel: FrameChannel, err: ConvergeError, signal?: AbortSignal): Promise<void> {
  try {
    await channel.send(pack({ t: 'error', code: err.code, message: err.message.slice(0, 1024) }), { signal })
    await channel.close({ signal })
  } catch {
    channel.abort(err)
  }
}
