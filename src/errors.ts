import type { DatasetSchema } from './digest/schema.ts'

/**
 * One error class per condition, each with a stable `code` that tests and
 * callers match on (never the message). `cause` carries the underlying error.
 */
export class ConvergeError extends Error {
  readonly code: string
  constructor (code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/** Thrown when a config file or value is invalid; the message names the field. */
export class ConfigError extends ConvergeError {
  constructor (message: string, options?: { cause?: unknown }) { super('CONVERGE_CONFIG_INVALID', message, options) }
}

/** Thrown when a row value does not fit its column type. */
export class RowEncodingError extends ConvergeError {
  constructor (message: string) { super('CONVERGE_ROW_ENCODING', message) }
}

/** Thrown when a frame's declared length exceeds the protocol maximum. */
export class FrameTooLargeError extends ConvergeError {
  constructor (length: number | undefined, max: number) {
    super('CONVERGE_FRAME_TOO_LARGE', `${length === undefined ? 'declared frame length' : `frame of ${length} bytes`} exceeds the maximum of ${max} bytes`)
  }
}

/** Thrown when bytes from a peer do not decode to a valid message. */
export class MalformedMessageError extends ConvergeError {
  constructor (message: string, options?: { cause?: unknown }) { super('CONVERGE_MALFORMED_MESSAGE', message, options) }
}

/** Thrown when a peer breaks the sync protocol (wrong order, rows that do not match what it listed). */
export class ProtocolViolationError extends ConvergeError {
  constructor (message: string) { super('CONVERGE_PROTOCOL_VIOLATION', message) }
}

/** Thrown when the remote side of a sync reports an error frame. */
export class RemoteError extends ConvergeError {
  readonly remoteCode: string
  constructor (remoteCode: string, message: string) {
    super('CONVERGE_REMOTE_ERROR', `peer answered ${remoteCode}: ${message}`)
    this.remoteCode = remoteCode
  }
}

/** Thrown when a sync is asked for a dataset the peer does not serve. */
export class UnknownDatasetError extends ConvergeError {
  constructor (dataset: string) { super('CONVERGE_UNKNOWN_DATASET', `unknown dataset "${dataset}"`) }
}

/** Thrown when two peers hold a dataset under different schemas. */
export class SchemaMismatchError extends ConvergeError {
  constructor (dataset: string, local: string, remote: string) {
    super('CONVERGE_SCHEMA_MISMATCH', `dataset "${dataset}": schema fingerprint ${remote} differs from local ${local}`)
  }
}

/**
 * Thrown by a sync client when the source answers under a comparison schema
 * (the two schemas differ compatibly): the replica sets up a view under
 * `shape` and opens again.
 */
export class ShapeOfferedError extends ConvergeError {
  constructor (dataset: string, readonly shape: DatasetSchema) {
    super('CONVERGE_SHAPE_OFFERED', `dataset "${dataset}": the source compares on a schema of the columns both sides share`)
  }
}

/** Thrown when a stream ends before the expected message arrived. */
export class StreamEndedError extends ConvergeError {
  constructor (message = 'stream ended before the expected message') { super('CONVERGE_STREAM_ENDED', message) }
}

/** Thrown when an operation was cancelled through its AbortSignal. */
export class AbortedError extends ConvergeError {
  constructor (message = 'operation aborted') { super('CONVERGE_ABORTED', message) }
}

/** Thrown when a store is used before open() or after close(). */
export class StoreNotOpenError extends ConvergeError {
  constructor (what: string) { super('CONVERGE_STORE_NOT_OPEN', `${what} is not open`) }
}

/**
 * Thrown when a store opened read-only (a comparison, `converge diff`) is
 * asked to write, to follow or trim its change log, or for its identity.
 */
export class StoreReadOnlyError extends ConvergeError {
  constructor (what: string, operation: string) { super('CONVERGE_STORE_READ_ONLY', `${what} is open read-only: ${operation} is not allowed`) }
}

/** Thrown when a change feed is asked for history it no longer keeps; the consumer must rescan. */
export class ChangesTrimmedError extends ConvergeError {
  constructor (since: number, last: number) {
    super('CONVERGE_CHANGES_TRIMMED', `changes after ${since} are no longer kept (the store is at ${last}); a full scan is needed`)
  }
}

/** An index page record that does not parse: the digest index is damaged and is rebuilt from its store. */
export class IndexPageFormatError extends ConvergeError {
  constructor (detail: string) {
    super('CONVERGE_INDEX_PAGE_FORMAT', `index page damaged: ${detail}; the index is rebuilt from its store`)
  }
}

/** Entries waiting in memory could not be written into their index pages; they stay waiting and the write is tried again. */
export class IndexWriteError extends ConvergeError {
  constructor (cause: unknown) {
    super('CONVERGE_INDEX_WRITE', `index pages not written: ${(cause as Error).message}; the entries stay in memory and the write is tried again`, { cause })
  }
}

/** Thrown when a store's table does not match the dataset schema (a missing column, no primary key). */
export class StoreSchemaError extends ConvergeError {
  constructor (message: string, options?: { cause?: unknown }) { super('CONVERGE_STORE_SCHEMA', message, options) }
}

/**
 * A store's table stopped matching what its agent read at start (a column
 * dropped, renamed or retyped under the running agent): `detail` is the
 * database's own words. The agent reads a table's schema only when it starts.
 */
export class StoreSchemaChangedError extends StoreSchemaError {
  constructor (table: string, detail: string, options?: { cause?: unknown }) {
    super(`${table} is not as the agent read it at start: ${detail}; restart the agent to compare under the table's schema now ` +
      '(a hand-written schema must name only columns the table has)', options)
  }
}

/**
 * Thrown when a store cannot set up its change capture (PostgreSQL: the
 * role may not create the schema `converge` or the table's triggers); the
 * message says what the role needs.
 */
export class StoreSetupError extends ConvergeError {
  constructor (message: string, options?: { cause?: unknown }) { super('CONVERGE_STORE_SETUP', message, options) }
}

/**
 * Sent back when the source cannot read the keys a replica asked about from
 * its store (a key its store cannot hold, or a store error); the replica
 * narrows instead.
 */
export class KeysUnreadableError extends ConvergeError {
  constructor (message: string) { super('CONVERGE_KEYS_UNREADABLE', message) }
}

/** Thrown when a store's database cannot be reached or answers with an error. */
export class StoreUnavailableError extends ConvergeError {
  constructor (message: string, options?: { cause?: unknown }) { super('CONVERGE_STORE_UNAVAILABLE', message, options) }
}

/** Thrown when the audit log's hash chain does not verify. */
export class AuditChainError extends ConvergeError {
  constructor (message: string) { super('CONVERGE_AUDIT_CHAIN_BROKEN', message) }
}

/** Thrown when the peer key file is unreadable or malformed. */
export class PeerKeyError extends ConvergeError {
  constructor (message: string, options?: { cause?: unknown }) { super('CONVERGE_PEER_KEY', message, options) }
}

export function throwIfAborted (signal?: AbortSignal): void {
  if (signal?.aborted === true) throw new AbortedError(signal.reason instanceof Error ? signal.reason.message : undefined)
}

/** Thrown when the audit log has no intent for a fix id. */
export class FixNotFoundError extends ConvergeError {
  readonly fixId: string
  constructor (fixId: string) {
    super('CONVERGE_FIX_NOT_FOUND', `no fix ${fixId} in the audit log`)
    this.fixId = fixId
  }
}

/** Thrown when a fix is to be rolled back but never committed (it was aborted, or is still in flight). */
export class FixNotCommittedError extends ConvergeError {
  readonly fixId: string
  constructor (fixId: string, state: string) {
    super('CONVERGE_FIX_NOT_COMMITTED', `fix ${fixId} never committed (${state}): there is nothing to roll back`)
    this.fixId = fixId
  }
}

/** Thrown when a fix to roll back already was rolled back; roll back the rollback to re-apply it. */
export class FixAlreadyRolledBackError extends ConvergeError {
  readonly fixId: string
  readonly rollbackFixId: string
  constructor (fixId: string, rollbackFixId: string) {
    super('CONVERGE_FIX_ALREADY_ROLLED_BACK', `fix ${fixId} was already rolled back by fix ${rollbackFixId}; to apply it again, roll back ${rollbackFixId}`)
    this.fixId = fixId
    this.rollbackFixId = rollbackFixId
  }
}

/** Thrown when rows a fix wrote have changed since, so rolling it back would overwrite later writes (unless forced). */
export class RollbackConflictError extends ConvergeError {
  readonly fixId: string
  readonly changed: number
  /** Hex of the first changed keys. */
  readonly keys: string[]
  constructor (fixId: string, changed: number, total: number, keys: string[]) {
    super('CONVERGE_ROLLBACK_CONFLICT', `cannot roll back fix ${fixId}: ${changed} of its ${total} rows changed since it was applied (keys ${keys.join(', ')}${changed > keys.length ? ', …' : ''}); force it to overwrite them`)
    this.fixId = fixId
    this.changed = changed
    this.keys = keys
  }
}

/** Thrown when a fix's audit entries hold no usable before-images, so it cannot be rolled back. */
export class RollbackUnavailableError extends ConvergeError {
  readonly fixId: string
  constructor (fixId: string) {
    super('CONVERGE_ROLLBACK_UNAVAILABLE', `fix ${fixId} recorded no before-images: it cannot be rolled back`)
    this.fixId = fixId
  }
}

/** Thrown when a fix is to be rolled back against a store of another dataset. */
export class FixDatasetMismatchError extends ConvergeError {
  constructor (fixId: string, fixDataset: string, dataset: string) {
    super('CONVERGE_FIX_DATASET_MISMATCH', `fix ${fixId} belongs to dataset "${fixDataset}", not "${dataset}"`)
  }
}

/** Thrown when an offline command finds the agent's LevelDB locked by the running agent. */
export class AgentRunningError extends ConvergeError {
  constructor (dataDir: string, options?: { cause?: unknown }) {
    super('CONVERGE_AGENT_RUNNING', `the agent at ${dataDir} is running; ask it over its status port, or stop it`, options)
  }
}

/**
 * Thrown when an address the agent must listen on is taken by another
 * process (another agent on this host, say); the message names the address
 * and the setting that gives it.
 */
export class AddressInUseError extends ConvergeError {
  constructor (what: string, address: string, setting: string, options?: { cause?: unknown }) {
    super('CONVERGE_ADDRESS_IN_USE', `${what} ${address} is in use by another process: give ${setting} another one`, options)
  }
}

/** Thrown when a secret file (peer key, pre-shared key) can be read by group or others; the message names the chmod to run. */
export class SecretFileModeError extends ConvergeError {
  readonly path: string
  constructor (what: string, path: string, mode: number) {
    super('CONVERGE_SECRET_FILE_MODE', `${what} ${path} is readable by group or others (mode ${mode.toString(8)}); run chmod 600 ${path}`)
    this.path = path
  }
}

/** Thrown when the cluster's pre-shared key is missing, unreadable or not in the swarm key format. */
export class PskInvalidError extends ConvergeError {
  constructor (message: string, options?: { cause?: unknown }) { super('CONVERGE_PSK_INVALID', message, options) }
}

/** Thrown when bytes from a peer nest deeper than the decoder allows; refused before they are decoded. */
export class MessageTooDeepError extends ConvergeError {
  constructor (what: string, maxDepth: number) { super('CONVERGE_MESSAGE_TOO_DEEP', `${what}: nested deeper than ${maxDepth} levels`) }
}

/** Thrown when the peer serving as a dataset's source of truth answers a sync under another region's name. */
export class SourceRegionMismatchError extends ConvergeError {
  constructor (expected: string, answered: string) {
    super('CONVERGE_SOURCE_REGION_MISMATCH', `the source of truth was dialed as region "${expected}" but answered as "${answered}"`)
  }
}

/** Thrown when a row sent by the source of truth is not a canonical row of the dataset schema (wrong types, a null key, another encoding). */
export class InvalidSourceRowError extends ConvergeError {
  constructor (message: string) { super('CONVERGE_INVALID_SOURCE_ROW', message) }
}

/** Thrown when the replies to one sync round add up to more bytes than a client holds for a round. */
export class ReplyTooLargeError extends ConvergeError {
  constructor (max: number) { super('CONVERGE_REPLY_TOO_LARGE', `the replies to one round exceed ${max} bytes`) }
}

/** Thrown (and sent as an error frame) when a peer opens more sync streams at once than it may. */
export class TooManyStreamsError extends ConvergeError {
  constructor (peerId: string, max: number) { super('CONVERGE_TOO_MANY_STREAMS', `peer ${peerId} already has ${max} sync streams open here`) }
}

/** Thrown (and sent as an error frame) when a sync `open` names a region that is bound to another peer. */
export class RegionClaimError extends ConvergeError {
  constructor (region: string) { super('CONVERGE_REGION_CLAIM_REFUSED', `region "${region}" belongs to another peer`) }
}

/** Thrown when a secret file cannot be read, is not a regular file or is too large. */
export class SecretFileError extends ConvergeError {
  constructor (message: string, options?: { cause?: unknown }) { super('CONVERGE_SECRET_FILE', message, options) }
}
