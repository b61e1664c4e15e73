/** Shared wording, so that reasons read the same everywhere. */

export const rows = (n: number): string => `${n} ${n === 1 ? 'row' : 'rows'}`

/** A share as a percentage with at most two decimals: 0.125 -> "12.5%". */
export const percent = (share: number): string => `${Number((share * 100).toFixed(2))}%`
