/**
 * The agent's libp2p node: TCP, noise, yamux, identify and gossipsub with
 * strictly signed messages.
 *
 * With `security` (how the agent runs) it is also closed to strangers and
 * bounded: the connection gater refuses peers off the allowlist right after
 * the noise handshake, an optional pre-shared key wraps every connection
 * before noise (a host without the key cannot even complete a handshake),
 * gossipsub carries the cluster's topics only and scores peers by the
 * validator's verdicts, and connections, streams, messages and per-stream
 * buffers all have ceilings. Without it (tests' stand-in peers) the node is
 * plain.
 */
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { ConnectionGater, PrivateKey } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p, type Libp2pInit } from 'libp2p'
import { MAX_SUMMARY_BYTES } from '../constants.ts'
import { CLUSTER_SCORE_THRESHOLDS, clusterScoreParams } from '../gossip/scoring.ts'

export interface NodeSecurity {
  gater?: ConnectionGater
  /** The cluster's pre-shared key in swarm key format (see security/psk.ts). */
  psk?: Uint8Array
  /** The only gossip topics carried: messages and subscriptions for any other are dropped. */
  topics: string[]
  /** Open connections at most. */
  maxConnections: number
  /** Bytes a stream may hold unsent (the remote is not reading) or unread, before it is reset. */
  maxBufferedBytes: number
}

export interface AgentNodeInit {
  privateKey: PrivateKey
  /** Multiaddrs to listen on, e.g. /ip4/127.0.0.1/tcp/7001. */
  listen: string[]
  security?: NodeSecurity
  /** libp2p's own metrics (@libp2p/prometheus-metrics on the agent's registry), served on the agent's /metrics. */
  metrics?: Libp2pInit['metrics']
}

/**
 * One gossip RPC may batch a few summaries and control messages; summaries
 * are under 1 KiB, so 64 KiB leaves room while refusing megabyte RPCs.
 */
const MAX_GOSSIP_RPC_BYTES = Math.max(64 * 1024, 4 * MAX_SUMMARY_BYTES)
/** Streams of all protocols one connection may carry at once (sync streams are limited further per peer). */
const MAX_STREAMS_PER_CONNECTION = 64
/** Bytes one yamux frame carries: the default, stated so the buffer bounds below are read against it. */
const YAMUX_MESSAGE_BYTES = 64 * 1024

export async function createAgentNode (init: AgentNodeInit) {
  const sec = init.security
  return await createLibp2p({
    privateKey: init.privateKey,
    ...(init.metrics === undefined ? {} : { metrics: init.metrics }),
    addresses: { listen: init.listen },
    transports: [tcp(sec === undefined ? {} : { maxConnections: sec.maxConnections + 16 })],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux(sec === undefined
      ? {}
      : {
          maxInboundStreams: MAX_STREAMS_PER_CONNECTION,
          maxOutboundStreams: MAX_STREAMS_PER_CONNECTION,
          maxMessageSize: YAMUX_MESSAGE_BYTES,
          // yamux keeps whatever is written to a stream the remote does not read; unbounded by default
          streamOptions: { maxWriteBufferLength: sec.maxBufferedBytes, maxReadBufferLength: sec.maxBufferedBytes }
        })],
    ...(sec?.psk === undefined ? {} : { connectionProtector: preSharedKey({ psk: sec.psk }) }),
    ...(sec?.gater === undefined ? {} : { connectionGater: sec.gater }),
    ...(sec === undefined
      ? {}
      : {
          connectionManager: {
            maxConnections: sec.maxConnections,
            // handshakes in flight: a burst of strangers cannot queue without bound
            maxIncomingPendingConnections: 16,
            // a peer that stalls its handshake (one without the pre-shared key cannot finish it) holds a slot this long at most
            inboundUpgradeTimeout: 5_000
          }
        }),
    services: {
      identify: identify(sec === undefined ? {} : { maxMessageSize: 8192, maxInboundStreams: 2, maxOutboundStreams: 2 }),
      pubsub: gossipsub({
        // a summary published while no peer is connected yet is simply not delivered
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        globalSignaturePolicy: 'StrictSign',
        ...(sec === undefined
          ? {}
          : {
              allowedTopics: sec.topics,
              maxInboundDataLength: MAX_GOSSIP_RPC_BYTES,
              maxOutboundBufferSize: 4 * MAX_GOSSIP_RPC_BYTES,
              decodeRpcLimits: { maxSubscriptions: 64, maxMessages: 64, maxIhaveMessageIDs: 1024, maxIwantMessageIDs: 1024, maxIdontwantMessageIDs: 512, maxControlMessages: 64, maxPeerInfos: 16 },
              scoreParams: clusterScoreParams(sec.topics),
              scoreThresholds: CLUSTER_SCORE_THRESHOLDS,
              doPX: false
            })
      })
    }
  })
}

export type AgentNode = Awaited<ReturnType<typeof createAgentNode>>
