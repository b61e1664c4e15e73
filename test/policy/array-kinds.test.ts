import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const TSX = import.meta.resolve('tsx')
const RESTORE = new URL('../../src/policy/restore.ts', import.meta.url).href
const FIX_ROWS = new URL('../../src/audit/fix-rows.ts', import.meta.url).href

/**
 * The arrays a fix is made of reach the audit, the index and the metrics
 * every repair; code TurboFan compiled for one elements kind is deoptimized
 * by another ("wrong map"), so they are of one kind, the general packed one,
 * whatever the input's kind and however many rows (see objectArray).
 */
describe('the arrays of a planned fix', () => {
  it('are of V8\'s general packed kind, empty or not, from inputs of any kind', async () => {
    const script = `
      import { splitFix } from ${JSON.stringify(RESTORE)}
      import { afterImages } from ${JSON.stringify(FIX_ROWS)}
      const general = new Function('a', 'return %HasObjectElements(a) && !%HasHoleyElements(a)')
      const key = i => new Uint8Array([i])
      const mapped = [3, 1, 2].map(i => ({ key: key(i), row: new Uint8Array([i, i]) }))
      const holey = new Array(2); holey[0] = key(9); holey[1] = key(8)
      const seen = []
      for (const [upserts, deletes] of [[mapped, holey], [[], []], [mapped, []], [[], holey]]) {
        for (const fix of splitFix(upserts, deletes, 2)) {
          seen.push([general(fix.upserts), general(fix.deletes), general(fix.upsertKeys), general(afterImages(fix))])
        }
      }
      console.log(JSON.stringify(seen))`
    const { stdout } = await promisify(execFile)(process.execPath, ['--allow-natives-syntax', '--import', TSX, '--input-type=module', '-e', script])
    const seen = JSON.parse(stdout) as boolean[][]
    expect(seen.length).toBeGreaterThan(4)
    expect(seen.flat().every(Boolean)).toBe(true)
  })
})
