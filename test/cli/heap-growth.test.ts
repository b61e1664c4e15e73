import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it, vi } from 'vitest'
import { ConfigError } from '../../src/errors.ts'

const flags = vi.hoisted(() => [] as string[])
vi.mock('node:v8', async importOriginal => ({ ...await importOriginal<typeof import('node:v8')>(), setFlagsFromString: (f: string) => { flags.push(f) } }))
const { applyHeapGrowth, parseHeapGrowth, V8_HEAP_GROWTH_FLAG } = await import('../../src/cli/heap-growth.ts')

describe('heap growth', () => {
  it('takes a whole percentage from 0 to 900 and names what is wrong otherwise', () => {
    expect(parseHeapGrowth('0', '--heap-growth')).toBe(0)
    expect(parseHeapGrowth('200', '--heap-growth')).toBe(200)
    expect(parseHeapGrowth('900', 'CONVERGE_HEAP_GROWTH')).toBe(900)
    for (const bad of ['', ' ', '-1', '1.5', '901', 'lots', '2e2x']) {
      expect(() => parseHeapGrowth(bad, 'CONVERGE_HEAP_GROWTH')).toThrow(ConfigError)
    }
    expect(() => parseHeapGrowth('lots', 'CONVERGE_HEAP_GROWTH')).toThrow('CONVERGE_HEAP_GROWTH: "lots" is not a whole percentage from 0 (V8\'s own heap growth) to 900')
  })

  it('sets V8\'s heap growth, a setting this Node\'s V8 has', async () => {
    applyHeapGrowth(200)
    applyHeapGrowth(0)
    expect(flags).toEqual([`${V8_HEAP_GROWTH_FLAG}=200`, `${V8_HEAP_GROWTH_FLAG}=0`])
    // V8 only warns about a flag it does not know: a Node whose V8 dropped this one fails here instead
    const { stdout } = await promisify(execFile)(process.execPath, ['--v8-options'], { maxBuffer: 16 * 1024 * 1024 })
    expect(stdout).toContain(`  ${V8_HEAP_GROWTH_FLAG} (`)
  })
})
