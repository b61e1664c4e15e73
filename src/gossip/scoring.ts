/**
 * Gossipsub peer scoring for the cluster's summary topic.
 *
 * The score is there to cut off a peer that keeps sending summaries the topic
 * validator rejects (malformed, inconsistent, or claiming a region that is not
 * its own). What an honest agent does must never push it down: an agent
 * publishes one summary per dataset per gossip interval, whatever the others
 * do, so the delivery-rate penalties (P3, P3b) are off; agents of a cluster
 * are known by peer id, so the same-IP penalty (P6) is off too (a test
 * cluster on loopback shares one address). What is left:
 *
 * - P1 and P2 (time in the mesh, first deliveries) give an honest agent a
 *   small positive score, capped by topicScoreCap;
 * - P4 (invalid messages) costs INVALID_WEIGHT x n^2 for n rejected messages,
 *   n decaying by INVALID_DECAY per second (half-life about 23 s);
 * - P7 (behaviour penalties, the router's own: grafting while backed off,
 *   broken IWANT promises) as gossipsub sets it.
 *
 * With the graylist at -400, seven rejected summaries in short order
 * graylist a peer (its messages are no longer processed) and the peer guard
 * then hangs up on it; a peer that once sent a bad summary recovers within a
 * minute.
 */
import type { PeerScoreParams, PeerScoreThresholds, TopicScoreParams } from '@libp2p/gossipsub/score'

const INVALID_WEIGHT = -10
const INVALID_DECAY = 0.97

export const CLUSTER_SCORE_THRESHOLDS: PeerScoreThresholds = {
  gossipThreshold: -50,
  publishThreshold: -100,
  graylistThreshold: -400,
  // peer exchange is off (doPX false); only a well-behaved, long-lived peer would reach this
  acceptPXThreshold: 100,
  opportunisticGraftThreshold: 5
}

export function clusterTopicScore (): Partial<TopicScoreParams> {
  return {
    topicWeight: 1,
    timeInMeshWeight: 0.01,
    timeInMeshQuantum: 1000,
    timeInMeshCap: 300,
    firstMessageDeliveriesWeight: 0.5,
    firstMessageDeliveriesDecay: 0.9,
    firstMessageDeliveriesCap: 10,
    meshMessageDeliveriesWeight: 0,
    meshFailurePenaltyWeight: 0,
    invalidMessageDeliveriesWeight: INVALID_WEIGHT,
    invalidMessageDeliveriesDecay: INVALID_DECAY
  }
}

export function clusterScoreParams (topics: readonly string[]): Partial<PeerScoreParams> {
  return {
    topics: Object.fromEntries(topics.map(t => [t, clusterTopicScore() as TopicScoreParams])),
    topicScoreCap: 10,
    IPColocationFactorWeight: 0,
    decayInterval: 1000,
    decayToZero: 0.01,
    // a peer that hangs up and comes back keeps its score for this long
    retainScore: 3_600_000
  }
}
