/**
 * Nesting bound for JSON and YAML text, checked before the text is parsed:
 * both parsers recurse once per level, so text nested thousands deep would
 * otherwise be refused only by running the parser off the stack.
 *
 * Counts brackets and braces outside quoted strings (JSON's only nesting,
 * YAML's flow nesting). YAML block nesting needs indentation, which grows
 * with the depth: a 1 MiB file nests at most about 1,400 blocks deep, which
 * the parser handles.
 */
export function maxBracketDepth (text: string): number {
  let depth = 0
  let max = 0
  let quote: '"' | "'" | undefined
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (quote !== undefined) {
      if (c === '\\' && quote === '"') i++
      else if (c === quote) quote = undefined
      continue
    }
    if (c === '"' || c === "'") quote = c
    else if (c === '[' || c === '{') { depth++; if (depth > max) max = depth } else if (c === ']' || c === '}') depth = Math.max(0, depth - 1)
  }
  return max
}
