/**
 * Protocol limits and defaults in one place, each with the reason for its value.
 */

/** Children per tree node: one hex digit of the key hash per level. */
export const TREE_FANOUT = 16

/** Rows a leaf should hold on average; the tree depth is chosen from the row count to keep leaves near this. */
export const TARGET_LEAF_ROWS = 32

/** Deepest tree kept in memory: 16^6 = 16.7M leaves, enough for ~500M rows at the target leaf size. */
export const MAX_TREE_DEPTH = 6

/**
 * Tree level of a partition: a partitioned dataset's key hash starts with
 * 4 hex digits (16 bits) taken from the partition value, so each partition is
 * one node at this level (65,536 buckets: 100 partitions share one with about
 * 7% odds, and then reconcile together) and the tree is never shallower.
 */
export const PARTITION_LEVEL = 4

/** Partitions of one dataset reconciled at the same time. */
export const PARTITION_CONCURRENCY = 4

/** A mismatched node with this many rows or fewer on either side is listed instead of expanded. */
export const LIST_THRESHOLD = 24

/** Largest frame accepted on a sync stream (after the length prefix). */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024

/** Responses are cut into frames of about this many bytes so that large fetches stream. */
export const RESPONSE_CHUNK_BYTES = 256 * 1024

/** Largest gossip summary accepted; a summary is a root plus 16 children, well under 1 KiB. */
export const MAX_SUMMARY_BYTES = 16 * 1024

/** How long one sync exchange may take before it is abandoned. */
export const SYNC_TIMEOUT_MS = 60_000

/** Idle time after which a sync stream is aborted. */
export const SYNC_IDLE_TIMEOUT_MS = 15_000

/** Rows in one fix (one store transaction); a larger drift is repaired as several fixes. */
export const MAX_FIX_ROWS = 50_000

/** Rows read from a store or index per batch during scans. */
export const SCAN_BATCH_ROWS = 1000

export const SYNC_PROTOCOL = '/converge/sync/1'
export const PROTOCOL_VERSION = 1
export function summaryTopic (cluster: string): string { return `converge/${cluster}/summaries/1` }
