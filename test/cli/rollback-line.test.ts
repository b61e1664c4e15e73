import { describe, expect, it } from 'vitest'
import { rollbackLine } from '../../src/cli/review-commands.ts'

describe('converge rollback: the line it prints', () => {
  const done = { fixId: 'f2', rollbackOf: 'f1', rows: 5 }

  it('names both fixes and the rows when everything went back as it was', () => {
    expect(rollbackLine({ ...done, overwritten: 0, storedOtherwise: 0 })).toBe('fix f1 rolled back by fix f2 (5 rows)')
    // an older agent leaves the counts out
    expect(rollbackLine(done)).toBe('fix f1 rolled back by fix f2 (5 rows)')
  })

  it('says which rows were overwritten by force and which the store kept otherwise', () => {
    expect(rollbackLine({ ...done, overwritten: 2 })).toBe('fix f1 rolled back by fix f2 (5 rows; 2 of them changed since the fix and overwritten (--force))')
    expect(rollbackLine({ ...done, overwritten: 1, storedOtherwise: 3 })).toBe(
      'fix f1 rolled back by fix f2 (5 rows; 1 of them changed since the fix and overwritten (--force); 3 stored otherwise than their before-images: the store changed them as they were written)')
  })
})
