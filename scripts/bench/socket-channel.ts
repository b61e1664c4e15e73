/**
 * A sync FrameChannel over a plain TCP socket, for the benchmark's two agent
 * processes (pg-first-pass-side.ts): the same uvarint length-prefixed frames
 * and byte accounting as the libp2p channel and memoryChannelPair, without
 * libp2p's handshake and encryption in the timing.
 */
import type { Socket } from 'node:net'
import { decode, encode, encodingLength } from 'uint8-varint'
import { MAX_FRAME_BYTES } from '../../src/constants.ts'
import { AbortedError, FrameTooLargeError, StreamEndedError } from '../../src/errors.ts'
import type { FrameChannel } from '../../src/sync/channel.ts'

/** A varint of a frame length is at most this long (lengths fit 32 bits). */
const MAX_PREFIX_BYTES = 5

export function socketChannel (socket: Socket, maxFrameBytes = MAX_FRAME_BYTES): FrameChannel {
  socket.setNoDelay(true)
  let sent = 0
  let received = 0
  let buffered: Buffer = Buffer.alloc(0)
  let ended = false
  let failure: Error | undefined
  let wake: (() => void) | undefined
  const notify = (): void => { const w = wake; wake = undefined; w?.() }
  socket.on('data', (chunk: Buffer) => { buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]); notify() })
  socket.on('end', () => { ended = true; notify() })
  socket.on('error', (err: Error) => { failure = err; notify() })
  socket.on('close', () => { ended = true; notify() })

  /** The next whole frame in `buffered`, if one is there. */
  const take = (): Uint8Array | undefined => {
    if (buffered.length === 0) return undefined
    let length: number
    try {
      length = decode(buffered.subarray(0, MAX_PREFIX_BYTES))
    } catch {
      return undefined // the prefix is not all here yet
    }
    if (length > maxFrameBytes) throw new FrameTooLargeError(undefined, maxFrameBytes)
    const start = encodingLength(length)
    if (buffered.length < start + length) return undefined
    const frame = buffered.subarray(start, start + length)
    buffered = buffered.subarray(start + length)
    received += start + length
    return frame
  }

  return {
    get bytesSent () { return sent },
    get bytesReceived () { return received },
    async send (frame) {
      if (frame.length > maxFrameBytes) throw new FrameTooLargeError(frame.length, maxFrameBytes)
      const prefix = encode(frame.length)
      sent += prefix.length + frame.length
      // one write per frame: a prefix sent alone would wait on Nagle for the body
      if (!socket.write(Buffer.concat([prefix, frame]))) await new Promise<void>(resolve => socket.once('drain', () => resolve()))
    },
    async receive (options) {
      for (;;) {
        const frame = take()
        if (frame !== undefined) return frame
        if (failure !== undefined) throw failure
        if (ended) throw new StreamEndedError()
        if (options?.signal?.aborted === true) throw new AbortedError()
        const signal = options?.signal
        signal?.addEventListener('abort', notify, { once: true })
        await new Promise<void>(resolve => { wake = resolve })
        signal?.removeEventListener('abort', notify)
      }
    },
    async close () { await new Promise<void>(resolve => socket.end(resolve)) },
    abort (err) { failure = err; socket.destroy(err) }
  }
}
