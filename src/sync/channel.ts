/**
 * A frame channel: whole msgpack frames in, whole frames out, with byte
 * counts. The libp2p channel length-prefixes frames on a stream and refuses a
 * declared length over the maximum before reading the body; the memory pair
 * serves tests, the simulator and benchmarks with the same accounting.
 */
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { encodingLength } from 'uint8-varint'
import { MAX_FRAME_BYTES } from '../constants.ts'
import { AbortedError, FrameTooLargeError, MalformedMessageError, StreamEndedError } from '../errors.ts'

export interface FrameChannel {
  send: (frame: Uint8Array, options?: { signal?: AbortSignal }) => Promise<void>
  /** The next frame; throws StreamEndedError when the remote closed its side. */
  receive: (options?: { signal?: AbortSignal }) => Promise<Uint8Array>
  /** Closes the writing side once queued frames are out. */
  close: (options?: { signal?: AbortSignal }) => Promise<void>
  abort: (err: Error) => void
  readonly bytesSent: number
  readonly bytesReceived: number
}

function prefixed (n: number): number { return n + encodingLength(n) }

/** Frames over a libp2p stream: uvarint length prefix, then the body. */
export function streamChannel (stream: Stream, maxFrameBytes = MAX_FRAME_BYTES): FrameChannel {
  const lp = lpStream(stream, { maxDataLength: maxFrameBytes, maxBufferSize: maxFrameBytes + 16 })
  let sent = 0
  let received = 0
  return {
    get bytesSent () { return sent },
    get bytesReceived () { return received },
    async send (frame, options) {
      if (frame.length > maxFrameBytes) throw new FrameTooLargeError(frame.length, maxFrameBytes)
      await lp.write(frame, options)
      sent += prefixed(frame.length)
    },
    async receive (options) {
      try {
        const list = await lp.read(options)
        received += prefixed(list.byteLength)
        return list.subarray()
      } catch (err) {
        const name = (err as Error).name
        if (name === 'InvalidDataLengthError') throw new FrameTooLargeError(undefined, maxFrameBytes)
        if (name === 'InvalidMessageLengthError' || name === 'InvalidDataLengthLengthError') throw new MalformedMessageError('frame length prefix is not a valid varint', { cause: err })
        if (name === 'UnexpectedEOFError') throw new StreamEndedError()
        if (name === 'AbortError' || options?.signal?.aborted === true) throw new AbortedError()
        throw err
      }
    },
    async close (options) { await stream.close(options) },
    abort (err) { stream.abort(err) }
  }
}

/** Two connected in-memory channels. */
export function memoryChannelPair (maxFrameBytes = MAX_FRAME_BYTES): [FrameChannel, FrameChannel] {
  const make = (): { queue: Uint8Array[], waiters: Array<(f: Uint8Array | null) => void>, closed: boolean } => ({ queue: [], waiters: [], closed: false })
  const ab = make(); const ba = make()
  const side = (out: ReturnType<typeof make>, inbox: ReturnType<typeof make>): FrameChannel => {
    let sent = 0; let received = 0
    const deliver = (f: Uint8Array | null): void => {
      const w = out.waiters.shift()
      if (w !== undefined) w(f)
      else if (f !== null) out.queue.push(f)
    }
    return {
      get bytesSent () { return sent },
      get bytesReceived () { return received },
      async send (frame) {
        if (frame.length > maxFrameBytes) throw new FrameTooLargeError(frame.length, maxFrameBytes)
        if (out.closed) throw new StreamEndedError('channel closed for writing')
        sent += prefixed(frame.length)
        deliver(frame.slice())
      },
      async receive (options) {
        const next = inbox.queue.shift()
        if (next !== undefined) { received += prefixed(next.length); return next }
        if (inbox.closed) throw new StreamEndedError()
        const frame = await new Promise<Uint8Array | null>((resolve, reject) => {
          const onAbort = (): void => reject(new AbortedError())
          options?.signal?.addEventListener('abort', onAbort, { once: true })
          inbox.waiters.push(f => { options?.signal?.removeEventListener('abort', onAbort); resolve(f) })
        })
        if (frame === null) throw new StreamEndedError()
        received += prefixed(frame.length)
        return frame
      },
      async close () { out.closed = true; while (out.waiters.length > 0) out.waiters.shift()!(null) },
      abort () { out.closed = true; inbox.closed = true; while (out.waiters.length > 0) out.waiters.shift()!(null); while (inbox.waiters.length > 0) inbox.waiters.shift()!(null) }
    }
  }
  return [side(ab, ba), side(ba, ab)]
}
