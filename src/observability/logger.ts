/**
 * Structured JSON logs (pino) to stdout. Secrets are redacted by path so a
 * config or header that carries one is never written out.
 */
import { pino, type Logger } from 'pino'

export type { Logger }

export function createLogger (options: { level?: string, region?: string, destination?: NodeJS.WritableStream } = {}): Logger {
  const level = options.level ?? process.env.CONVERGE_LOG_LEVEL ?? 'info'
  return pino({
    level,
    base: options.region === undefined ? undefined : { region: options.region },
    redact: {
      paths: [
        'token', '*.token', 'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization', 'privateKey', '*.privateKey', 'psk', '*.psk',
        // a PostgreSQL connection string may carry its password
        'password', '*.password', 'connectionString', '*.connectionString', '*.*.connectionString', 'secret', '*.secret'
      ],
      censor: '[redacted]'
    }
  }, options.destination as pino.DestinationStream | undefined)
}

export const silentLogger: Logger = pino({ level: 'silent' })
