/**
 * Tolerance: what counts as drift worth fixing now. A row still being
 * written (in flight), a difference not yet seen often enough to trust, and a
 * drift small enough to live with are all reported and left alone.
 */
import { u64Hex } from '../digest/hash.ts'
import type { ApartRow } from './apart.ts'
import type { DeferredRows } from './types.ts'
import { rows } from './wording.ts'

/**
 * In flight: the later of the two event times is younger than `graceMs`
 * (or in the future), so replication may simply not have caught up. A row
 * exactly `graceMs` old is out of the window. 0 turns the window off, as does
 * a schema without an event-time column; a row with no event time on either
 * side is never in flight.
 */
export function inFlight (row: ApartRow, now: number, graceMs: number): boolean {
  if (graceMs <= 0) return false
  const { sotTime, localTime } = row
  const latest = sotTime === undefined ? localTime : localTime === undefined ? sotTime : Math.max(sotTime, localTime)
  return latest !== undefined && now - latest < graceMs
}

/**
 * Identifies a key together with the digests of both sides, so that a count
 * of sightings restarts as soon as either side is written again: only a
 * difference that holds still is confirmed. The key hex comes first, so it is
 * the id up to the first ':'.
 */
export function sightingId (row: ApartRow): string {
  return `${row.keyHex}:${row.sotDigest === undefined ? '-' : u64Hex(row.sotDigest)}:${row.localDigest === undefined ? '-' : u64Hex(row.localDigest)}`
}

/** Why rows were left out of the fix; one line per kind, in a fixed order, none for kinds with no rows. */
export function deferralReasons (deferred: DeferredRows, graceMs: number, confirmations: number): string[] {
  const reasons: string[] = []
  if (deferred.inFlight > 0) reasons.push(`${rows(deferred.inFlight)} in flight: event time within the ${graceMs} ms grace window`)
  if (deferred.unconfirmed > 0) reasons.push(`${rows(deferred.unconfirmed)} not yet confirmed: a row is fixed once seen apart in ${confirmations} consecutive rounds`)
  if (deferred.keptLocal > 0) reasons.push(`${rows(deferred.keptLocal)} kept: the local version is the last write (merge)`)
  return reasons
}

export function acceptableReason (fixRows: number, acceptableRows: number): string {
  return `drift of ${rows(fixRows)} is within the acceptable ${acceptableRows}`
}
