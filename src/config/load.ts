/**
 * Reads a YAML or JSON config file, validates it, and resolves relative paths
 * against the file's directory.
 */
import { readFile } from 'node:fs/promises'
import { dirname, isAbsolute, resolve } from 'node:path'
import { parseYamlStrict } from './yaml.ts'
import { ConfigError } from '../errors.ts'
import { configSchema, type AgentConfig } from './schema.ts'
import { maxBracketDepth } from '../security/text-shape.ts'

const MAX_CONFIG_BYTES = 1024 * 1024
const MAX_CONFIG_DEPTH = 64

export function parseConfig (value: unknown, baseDir = process.cwd(), source = 'config'): AgentConfig {
  const parsed = configSchema.safeParse(value)
  if (!parsed.success) {
    const lines = parsed.error.issues.map(i => `  ${i.path.length === 0 ? '(top level)' : i.path.join('.')}: ${i.message}`)
    throw new ConfigError(`${source} is invalid:\n${lines.join('\n')}`)
  }
  const config = parsed.data
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p))
  config.dataDir = abs(config.dataDir)
  config.keyFile = abs(config.keyFile ?? resolve(config.dataDir, 'peer.key'))
  if (config.security.pskFile !== undefined) config.security.pskFile = abs(config.security.pskFile)
  for (const d of config.datasets) if (d.store.kind !== 'postgres') d.store.path = abs(d.store.path)
  for (const t of config.status?.tokens ?? []) if (t.tokenFile !== undefined) t.tokenFile = abs(t.tokenFile)
  return config
}

export async function loadConfig (path: string): Promise<AgentConfig> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`, { cause: err })
  }
  if (text.length > MAX_CONFIG_BYTES) throw new ConfigError(`config file ${path} is larger than ${MAX_CONFIG_BYTES} bytes`)
  // the parsers recurse per level: refuse deep nesting before they run (a real config nests about 6 deep)
  if (maxBracketDepth(text) > MAX_CONFIG_DEPTH) throw new ConfigError(`config file ${path} nests brackets deeper than ${MAX_CONFIG_DEPTH} levels`)
  let value: unknown
  if (/\.json$/i.test(path)) {
    try { value = JSON.parse(text) } catch (err) { throw new ConfigError(`config file ${path} does not parse: ${(err as Error).message}`, { cause: err }) }
  } else {
    value = parseYamlStrict(text, `config file ${path}`)
  }
  return parseConfig(value, dirname(resolve(path)), path)
}
