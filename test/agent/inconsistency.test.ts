import { describe, expect, it } from 'vitest'
import { InconsistencyJudge, sourceChangedDuring } from '../../src/agent/inconsistency.ts'
import type { Logger } from '../../src/observability/logger.ts'

/** A logger that keeps each call as [level, inconsistent, message]. */
function recorder (): { log: Logger, calls: Array<[string, number, string]> } {
  const calls: Array<[string, number, string]> = []
  const at = (level: string) => (fields: { inconsistent: number }, msg: string): void => { calls.push([level, fields.inconsistent, msg]) }
  return { log: { debug: at('debug'), info: at('info'), warn: at('warn') } as unknown as Logger, calls }
}

const opened = { count: 1000, sum: 42n }

describe('sourceChangedDuring', () => {
  it('is so when a summary heard during the exchange gives another root than the one it opened with', () => {
    expect(sourceChangedDuring({ count: 1001, sum: 42n, seenAt: 2000 }, 1500, opened)).toBe(true)
    expect(sourceChangedDuring({ count: 1000, sum: 43n, seenAt: 1500 }, 1500, opened)).toBe(true)
  })

  it('is not when the summary is older than the exchange, says the same root, or there is none to go by', () => {
    expect(sourceChangedDuring({ count: 1001, sum: 42n, seenAt: 1000 }, 1500, opened)).toBe(false)
    expect(sourceChangedDuring({ count: 1000, sum: 42n, seenAt: 2000 }, 1500, opened)).toBe(false)
    expect(sourceChangedDuring(undefined, 1500, opened)).toBe(false)
    expect(sourceChangedDuring({ count: 1001, sum: 42n, seenAt: 2000 }, 1500, undefined)).toBe(false)
  })
})

describe('InconsistencyJudge: inconsistent nodes from a source that changed are no warning', () => {
  it('says at once that the source changed when a summary heard during the exchange shows it', () => {
    const { log, calls } = recorder()
    new InconsistencyJudge().noted(3, opened, 1500, { count: 1005, sum: 7n, seenAt: 1600 }, log)
    expect(calls).toEqual([['info', 3, expect.stringMatching(/^the source changed during the exchange/)]])
  })

  it('waits for the next summary: another root means it changed, the same root a contradiction worth a warning', () => {
    const changed = recorder()
    const a = new InconsistencyJudge()
    a.noted(2, opened, 1500, { ...opened, seenAt: 1000 }, changed.log)
    a.noted(1, { count: 1003, sum: 9n }, 1700, { ...opened, seenAt: 1000 }, changed.log)
    a.summary({ count: 1010, sum: 11n })
    // judged once, for both exchanges, against the root the first opened with
    expect(changed.calls.filter(c => c[0] !== 'debug')).toEqual([['info', 3, expect.stringMatching(/^the source changed during the exchange/)]])
    a.summary({ count: 1011, sum: 12n })
    expect(changed.calls.filter(c => c[0] !== 'debug')).toHaveLength(1)

    const contradicted = recorder()
    const b = new InconsistencyJudge()
    b.noted(4, opened, 1500, undefined, contradicted.log)
    b.summary(opened)
    expect(contradicted.calls.filter(c => c[0] !== 'debug')).toEqual([['warn', 4, expect.stringMatching(/contradict each other, and its summary says it did not change/)]])
  })

  it('says nothing for an exchange without inconsistent nodes', () => {
    const { log, calls } = recorder()
    const judge = new InconsistencyJudge()
    judge.noted(0, opened, 1500, undefined, log)
    judge.summary({ count: 1, sum: 1n })
    expect(calls).toEqual([])
  })
})
