/**
 * One rule for every setting the command line takes: a flag wins over its
 * environment variable (CONVERGE_*), which wins over the config file, which
 * wins over the default. Each resolved value remembers where it came from,
 * so a command can say why it used what it used.
 */
import { ConfigError } from '../errors.ts'

export type Source = 'flag' | 'env' | 'config' | 'default'

export interface Resolved<T> { value: T, source: Source }

export interface SettingSpec<T> {
  /** The flag's value, undefined when not given. */
  flag?: string | number
  /** The environment variable's name. */
  env?: string
  /** The config file's value, undefined when the file has none. */
  config?: T
  default: T
  /** Turns a flag or environment string into a value; throws ConfigError naming `what`. */
  parse: (text: string, what: string) => T
}

export function resolveSetting<T> (name: string, spec: SettingSpec<T>, env: NodeJS.ProcessEnv = process.env): Resolved<T> {
  if (spec.flag !== undefined) return { value: typeof spec.flag === 'number' ? spec.flag as T : spec.parse(spec.flag, `--${name}`), source: 'flag' }
  const fromEnv = spec.env === undefined ? undefined : env[spec.env]
  if (fromEnv !== undefined && fromEnv.trim() !== '') return { value: spec.parse(fromEnv.trim(), spec.env!), source: 'env' }
  if (spec.config !== undefined) return { value: spec.config, source: 'config' }
  return { value: spec.default, source: 'default' }
}

/** A whole number of milliseconds, 0 or more. */
export function parseMs (text: string, what: string): number {
  const v = Number(text)
  if (!Number.isInteger(v) || v < 0) throw new ConfigError(`${what}: "${text}" is not a whole number of milliseconds`)
  return v
}

/** An http(s) URL. */
export function parseUrl (text: string, what: string): string {
  let url: URL
  try { url = new URL(text) } catch { throw new ConfigError(`${what}: "${text}" is not a URL`) }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(`${what}: "${text}" is not an http(s) URL`)
  return text
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

export function parseLogLevel (text: string, what: string): string {
  if (!(LOG_LEVELS as readonly string[]).includes(text)) throw new ConfigError(`${what}: "${text}" is not one of ${LOG_LEVELS.join(', ')}`)
  return text
}
