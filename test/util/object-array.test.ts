import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { objectArray, objectArrayOf } from '../../src/util/object-array.ts'

const TSX = import.meta.resolve('tsx')
const MODULE = new URL('../../src/util/object-array.ts', import.meta.url).href

describe('objectArray', () => {
  it('is an empty array that takes anything', () => {
    const a = objectArray<Uint8Array | string | null>()
    expect(a).toEqual([])
    a.push(new Uint8Array([1]), 'x', null)
    expect(a).toEqual([new Uint8Array([1]), 'x', null])
  })

  it('copies anything iterable into such an array', () => {
    expect(objectArrayOf([1, 2])).toEqual([1, 2])
    expect(objectArrayOf(new Set(['a']))).toEqual(['a'])
    expect(objectArrayOf([])).toEqual([])
  })

  it('holds V8\'s general elements from the start, where a fresh [] holds small integers only', async () => {
    // V8's own view of the arrays (natives syntax, in a process of its own)
    const script = `
      import { objectArray, objectArrayOf } from ${JSON.stringify(MODULE)}
      const check = new Function('a', 'return [%HasSmiElements(a), %HasObjectElements(a)]')
      const holey = new Array(2); holey[0] = 'x'; holey[1] = 'y'
      const general = new Function('a', 'return %HasObjectElements(a) && !%HasHoleyElements(a)')
      console.log(JSON.stringify({ literal: check([]), ours: check(objectArray()), copies: [objectArrayOf([]), objectArrayOf([1, 2]), objectArrayOf(holey)].map(general) }))`
    const { stdout } = await promisify(execFile)(process.execPath, ['--allow-natives-syntax', '--import', TSX, '--input-type=module', '-e', script])
    expect(JSON.parse(stdout)).toEqual({ literal: [true, false], ours: [false, true], copies: [true, true, true] })
  })
})
