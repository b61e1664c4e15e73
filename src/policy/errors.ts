/**
 * Errors of the policy engine. The engine is pure, so these only ever mean
 * that its caller handed it something inconsistent: a bug or a config the
 * config loader should have refused, never a condition to retry.
 */
import { ConvergeError } from '../errors.ts'

/** The dataset's rule, tolerance or risk settings cannot be applied (e.g. merge without an event-time column). */
export class PolicyConfigError extends ConvergeError {
  constructor (message: string) { super('CONVERGE_POLICY_CONFIG', message) }
}

/** The difference or the state handed to the policy engine is inconsistent (a row under another key, a key twice). */
export class PolicyInputError extends ConvergeError {
  constructor (message: string, options?: { cause?: unknown }) { super('CONVERGE_POLICY_INPUT', message, options) }
}
