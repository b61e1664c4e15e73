import { ConvergeError } from '../errors.ts'

/** Thrown when a review id names no review. */
export class ReviewNotFoundError extends ConvergeError {
  constructor (id: string) { super('CONVERGE_REVIEW_NOT_FOUND', `no review ${id}`) }
}

/** Thrown when a review was already decided (applied, rejected, superseded or refused). */
export class ReviewClosedError extends ConvergeError {
  constructor (id: string, state: string) { super('CONVERGE_REVIEW_CLOSED', `review ${id} is ${state}, not pending`) }
}

/** Thrown when an approved fix's rows changed after it was proposed: it is refused, and the next sync proposes afresh. */
export class ReviewStaleError extends ConvergeError {
  constructor (id: string, changed: number) {
    super('CONVERGE_REVIEW_STALE', `review ${id}: ${changed} row${changed === 1 ? '' : 's'} changed since the fix was proposed; it was not applied, and the next sync proposes a fresh one`)
  }
}

/** Thrown when a caller may not approve or reject a dataset's fixes. */
export class NotAnApproverError extends ConvergeError {
  constructor (name: string, dataset: string) { super('CONVERGE_NOT_APPROVER', `"${name}" is not an approver of dataset "${dataset}"`) }
}
