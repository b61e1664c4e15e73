/**
 * Plain YAML, read strictly. The `yaml` package only warns about a tag it
 * does not know (`region: !env REGION` reads as the text "REGION", and the
 * agent would run as a region of that name) and about an unknown directive,
 * printing the warning to the process's stderr; here each is an error with
 * its line, as parse errors are, and nothing is printed.
 */
import { parseDocument, type Document } from 'yaml'
import { ConfigError } from '../errors.ts'

/** Aliases a document may expand: a few for a real file, not a billion laughs. */
const MAX_ALIAS_COUNT = 100

/** The parse errors and warnings of a document as lines, with a hint when a tag is what went wrong. */
export function yamlProblems (doc: { errors: ReadonlyArray<{ message: string }>, warnings: ReadonlyArray<{ code: string, message: string }> }): string[] {
  // the first line of each: where and what (the lines after it quote the text, and the first ends with a colon before them)
  const lines = [...doc.errors, ...doc.warnings].map(p => p.message.split('\n')[0]!.trim().replace(/:$/, ''))
  if (doc.warnings.some(w => w.code === 'TAG_RESOLVE_FAILED')) lines.push('converge reads plain YAML: no custom tags (such as !env); write the value itself')
  return lines
}

/** Parses `text` (from `source`, named in the error) as plain YAML; ConfigError with every problem and its line otherwise. */
export function parseYamlStrict (text: string, source: string): unknown {
  const doc = parseDocument(text, { logLevel: 'silent' })
  const problems = yamlProblems(doc)
  if (problems.length > 0) throw new ConfigError(`${source} does not parse:\n${problems.map(p => `  ${p}`).join('\n')}`)
  return yamlValue(doc, source)
}

/**
 * A parsed document's value; ConfigError for what only shows once it is
 * turned into values: an alias to no anchor (`*name` before or without
 * `&name`), or more alias expansions than MAX_ALIAS_COUNT.
 */
export function yamlValue (doc: Document, source: string): unknown {
  try {
    return doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT })
  } catch (err) {
    throw new ConfigError(`${source} does not parse: ${(err as Error).message}`, { cause: err })
  }
}
