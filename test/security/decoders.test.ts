/**
 * Every decoder of bytes from outside (gossip summaries, sync frames and the
 * blocks inside them, rows from a source, config files) fed random,
 * truncated, deeply nested and huge-length input: each answers with a
 * ConvergeError that has a stable code and says what is wrong, never another
 * exception, never a crash, and never memory in proportion to what a header
 * declares. (Status-port bodies: test/security/status-bodies.test.ts.)
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import fc from 'fast-check'
import { pack } from 'msgpackr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig, parseConfig } from '../../src/config/load.ts'
import { ConvergeError } from '../../src/errors.ts'
import { decodeSummary, encodeSummary, summarize } from '../../src/gossip/summary.ts'
import { checkCanonicalRow } from '../../src/security/canonical-row.ts'
import { checkMsgpackShape } from '../../src/security/msgpack-shape.ts'
import { checkMessage, decodeFrame, errorSchema, openedSchema, openSchema, replySchema, roundSchema } from '../../src/sync/messages.ts'
import { decodeChildSums, decodeNodeSet, decodeReconciledBlock, decodeReconcileBlock, encodeNodeSet, encodeReconcileBlock } from '../../src/sync/wire.ts'
import { MerkleTree } from '../../src/tree/merkle-tree.ts'
import { ordersCodec as codec, order } from '../helpers/datasets.ts'
import { tempDir } from '../helpers/agents.ts'

/** Runs `fn`; passes when it returns, or throws a ConvergeError with a code and a message. Anything else fails the property. */
function clearOrOk (fn: () => unknown): ConvergeError | undefined {
  try {
    fn()
    return undefined
  } catch (err) {
    if (!(err instanceof ConvergeError)) throw new Error(`not a clear error: ${String(err)}`, { cause: err })
    expect(err.code).toMatch(/^CONVERGE_[A-Z_]+$/)
    expect(err.message.length).toBeGreaterThan(5)
    return err
  }
}

/** The heap grows by less than `mb` while `fn` runs. */
function boundedHeap (fn: () => void, mb = 16): void {
  const before = process.memoryUsage().heapUsed
  fn()
  expect((process.memoryUsage().heapUsed - before) / 2 ** 20).toBeLessThan(mb)
}

const deepArray = (n: number): Uint8Array => new Uint8Array(n).fill(0x91) // [[[[ … ]]]]
const deepMap = (n: number): Uint8Array => { const b: number[] = []; for (let i = 0; i < n; i++) b.push(0x81, 0xa1, 0x61); b.push(0xc0); return new Uint8Array(b) } // {a:{a:…}}
/** Headers that declare more than any input holds: array32, map32, str32, bin32. */
const HUGE = [[0xdd, 0xff, 0xff, 0xff, 0xff], [0xdf, 0xff, 0xff, 0xff, 0xff], [0xdb, 0x7f, 0xff, 0xff, 0xff], [0xc6, 0xff, 0xff, 0xff, 0xff]].map(h => new Uint8Array([...h, 1, 2, 3]))

const validMessages = [
  pack({ t: 'open', v: 1, cid: 'c', dataset: 'orders', region: 'r', fp: 'f', clock: { a: 1 } }),
  pack({ t: 'opened', v: 1, region: 'r', fp: 'f', clock: {}, depth: 2, count: 3, sum: new Uint8Array(8), children: new Uint8Array(48) }),
  pack({ t: 'round', expand: [[1, encodeNodeSet([1, 5])]], reconcile: [[2, 2, encodeReconcileBlock([{ index: 3, entries: [1n, 2n] }], 2)]] }),
  pack({ t: 'reply', rows: [codec.encodeRow(order(1))], more: false }),
  pack({ t: 'error', code: 'X', message: 'y' })
]
const schemas = [openSchema, openedSchema, roundSchema, replySchema, errorSchema]

describe('msgpack shape, before any msgpack decoding', () => {
  it('accepts whatever the encoder writes (property)', () => {
    const value = fc.letrec(tie => ({
      v: fc.oneof({ depthSize: 'small' }, fc.integer(), fc.double({ noNaN: true }), fc.string(), fc.boolean(), fc.constant(null), fc.uint8Array({ maxLength: 40 }),
        fc.array(tie('v'), { maxLength: 5 }), fc.dictionary(fc.string({ maxLength: 10 }).filter(k => k !== '__proto__'), tie('v'), { maxKeys: 5 }))
    })).v
    fc.assert(fc.property(value, v => { checkMsgpackShape(pack(v), 'value', { maxDepth: 64 }) }), { numRuns: 300 })
  })

  it('refuses every strict prefix of a value: truncated input is always caught (property)', () => {
    fc.assert(fc.property(fc.constantFrom(...validMessages), fc.nat(), (msg, cut) => {
      const prefix = msg.subarray(0, cut % msg.length)
      expect(clearOrOk(() => checkMsgpackShape(prefix, 'prefix', { maxDepth: 8 }))?.code).toBe('CONVERGE_MALFORMED_MESSAGE')
    }), { numRuns: 300 })
  })

  it('refuses deep nesting before the decoder could recurse into it', () => {
    for (const deep of [deepArray(100_000), deepMap(50_000)]) {
      expect(clearOrOk(() => checkMsgpackShape(deep, 'deep', { maxDepth: 8 }))?.code).toBe('CONVERGE_MESSAGE_TOO_DEEP')
    }
  })

  it('refuses a header declaring billions of items or bytes, without allocating for them', () => {
    boundedHeap(() => {
      for (const h of HUGE) expect(clearOrOk(() => checkMsgpackShape(h, 'huge', { maxDepth: 8 }))?.message).toMatch(/declares \d+ (entries|bytes) but only 3/)
    })
  })

  it('refuses extension types, the never-used byte and trailing bytes', () => {
    expect(clearOrOk(() => checkMsgpackShape(new Uint8Array([0xd6, 0xff, 0, 0, 0, 1]), 'x', { maxDepth: 8 }))?.message).toMatch(/extension type/)
    expect(clearOrOk(() => checkMsgpackShape(new Uint8Array([0xc1]), 'x', { maxDepth: 8 }))?.message).toMatch(/0xc1/)
    expect(clearOrOk(() => checkMsgpackShape(new Uint8Array([0x01, 0x02]), 'x', { maxDepth: 8 }))?.message).toMatch(/1 bytes follow/)
    expect(clearOrOk(() => checkMsgpackShape(pack(new Map([[1, 2]])), 'x', { maxDepth: 8 }))?.message).toMatch(/map key/)
  })
})

describe('sync frames: decodeFrame, then the message schemas', () => {
  it('random bytes: a clear error or a checked message (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 4 }), (bytes, s) => {
      clearOrOk(() => checkMessage(schemas[s]!, decodeFrame(bytes, 'frame'), 'frame'))
    }), { numRuns: 1000 })
  })

  it('any msgpack value against every message schema: a clear error or a checked message (property)', () => {
    fc.assert(fc.property(fc.anything({ maxDepth: 4 }), fc.integer({ min: 0, max: 4 }), (v, s) => {
      let bytes: Uint8Array
      try { bytes = pack(v) } catch { return }
      clearOrOk(() => checkMessage(schemas[s]!, decodeFrame(bytes, 'frame'), 'frame'))
    }), { numRuns: 500 })
  })

  it('valid messages with bytes flipped or cut: a clear error or a checked message (property)', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 4 }), fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 }), (i, cut, at, byte) => {
      const msg = Uint8Array.from(validMessages[i]!)
      msg[at % msg.length] = byte
      clearOrOk(() => checkMessage(schemas[i]!, decodeFrame(msg.subarray(0, 1 + cut % msg.length), 'frame'), 'frame'))
    }), { numRuns: 1000 })
  })

  it('deep nesting and huge declared lengths: refused with their own codes, in bounded memory', () => {
    expect(clearOrOk(() => decodeFrame(deepArray(1_000_000), 'open'))?.code).toBe('CONVERGE_MESSAGE_TOO_DEEP')
    boundedHeap(() => { for (const h of HUGE) expect(clearOrOk(() => decodeFrame(h, 'open'))?.code).toBe('CONVERGE_MALFORMED_MESSAGE') })
  })

  it('the binary blocks inside messages: random bytes give a clear error or a bounded result (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), fc.array(fc.integer({ min: 0, max: 20 }), { maxLength: 8 }), (bytes, sizes) => {
      clearOrOk(() => decodeNodeSet(bytes, 16 ** 3, 100))
      clearOrOk(() => decodeReconcileBlock(bytes, 16 ** 2, 2, 1000))
      clearOrOk(() => decodeReconcileBlock(bytes, 16, 8, 1000))
      clearOrOk(() => decodeChildSums(bytes, 16, 3))
      clearOrOk(() => decodeReconciledBlock(bytes, sizes))
    }), { numRuns: 1000 })
    // a count of 2^35 hashes in a few bytes is refused by the bound, not allocated
    boundedHeap(() => expect(clearOrOk(() => decodeReconcileBlock(new Uint8Array([0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), 16, 8, 1 << 21))?.code).toBe('CONVERGE_MALFORMED_MESSAGE'))
  })
})

describe('gossip summaries', () => {
  const valid = encodeSummary(summarize('eu-west', 'orders', 'fp', new MerkleTree(2)))

  it('random bytes, truncations and flipped bytes: a clear error or a consistent summary (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), bytes => { clearOrOk(() => decodeSummary(bytes)) }), { numRuns: 1000 })
    fc.assert(fc.property(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 }), (cut, at, byte) => {
      const m = Uint8Array.from(valid)
      m[at % m.length] = byte
      const s = clearOrOk(() => decodeSummary(m.subarray(0, 1 + cut % m.length)))
      if (s === undefined) {
        const d = decodeSummary(m.subarray(0, 1 + cut % m.length))
        expect(BigInt.asUintN(64, d.children.reduce((a, b) => a + b, 0n))).toBe(d.sum)
      }
    }), { numRuns: 1000 })
  })

  it('a root that is not the sum of its children is refused', () => {
    const tree = new MerkleTree(2)
    tree.addLeaf(1n << 60n, 42n); tree.rollUp()
    const s = summarize('eu-west', 'orders', 'fp', tree)
    expect(clearOrOk(() => decodeSummary(encodeSummary({ ...s, sum: s.sum + 1n })))?.message).toMatch(/root sum is not the sum of its children/)
    expect(clearOrOk(() => decodeSummary(encodeSummary({ ...s, count: 0 })))?.message).toMatch(/empty tree with a non-zero sum/)
  })

  it('oversized, deep and huge-length summaries are refused before decoding', () => {
    expect(clearOrOk(() => decodeSummary(new Uint8Array(100_000)))?.message).toMatch(/exceeds/)
    expect(clearOrOk(() => decodeSummary(deepArray(10_000)))?.code).toBe('CONVERGE_MESSAGE_TOO_DEEP')
    boundedHeap(() => { for (const h of HUGE) clearOrOk(() => decodeSummary(h)) })
  })
})

describe('rows from a source', () => {
  it('random bytes and mutated rows: refused unless canonical under the schema (property)', () => {
    const row = codec.encodeRow(order(7))
    fc.assert(fc.property(fc.uint8Array({ maxLength: 120 }), bytes => {
      if (clearOrOk(() => checkCanonicalRow(codec, bytes)) === undefined) expect([...codec.encodeRow(codec.decodeRow(bytes))]).toEqual([...bytes])
    }), { numRuns: 1000 })
    fc.assert(fc.property(fc.nat(), fc.integer({ min: 0, max: 255 }), (at, byte) => {
      const m = Uint8Array.from(row)
      m[at % m.length] = byte
      if (clearOrOk(() => checkCanonicalRow(codec, m)) === undefined) expect([...codec.encodeRow(codec.decodeRow(m))]).toEqual([...m])
    }), { numRuns: 1000 })
    expect(clearOrOk(() => checkCanonicalRow(codec, deepArray(50_000)))?.code).toBe('CONVERGE_INVALID_SOURCE_ROW')
  })
})

describe('config files', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  beforeAll(async () => { dir = await tempDir() })
  afterAll(async () => { await dir.remove() })

  const load = async (text: string, ext = 'yaml'): Promise<ConvergeError | undefined> => {
    const path = join(dir.path, `c.${ext}`)
    await writeFile(path, text)
    try { await loadConfig(path); return undefined } catch (err) {
      if (!(err instanceof ConvergeError)) throw new Error(`not a clear error: ${String(err)}`)
      expect(err.code).toBe('CONVERGE_CONFIG_INVALID')
      return err
    }
  }

  it('random text, as YAML and as JSON: CONVERGE_CONFIG_INVALID naming the problem (property)', async () => {
    await fc.assert(fc.asyncProperty(fc.string({ maxLength: 200 }), fc.boolean(), async (text, json) => { expect(await load(text, json ? 'json' : 'yaml')).toBeDefined() }), { numRuns: 60 })
  })

  it('any value: parseConfig answers with the fields at fault (property)', () => {
    fc.assert(fc.property(fc.anything({ maxDepth: 4 }), v => { expect(clearOrOk(() => parseConfig(v))?.code).toBe('CONVERGE_CONFIG_INVALID') }), { numRuns: 300 })
  })

  it('deep nesting and oversized files are refused before parsing', async () => {
    expect((await load('a: ' + '['.repeat(50_000) + ']'.repeat(50_000)))?.message).toMatch(/nests brackets deeper than 64/)
    expect((await load('{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000), 'json'))?.message).toMatch(/nests brackets deeper than 64/)
    expect((await load('#'.repeat(2 * 1024 * 1024)))?.message).toMatch(/larger than/)
  })

  it('a truncated valid config names the missing fields', async () => {
    const text = 'cluster: shop\nregion: eu-west\ndataDir: /tmp/x\ndatasets:\n  - name: orders\n    sourceOfTruth: [eu-west]\n'
    for (let cut = 0; cut < text.length; cut += 7) expect(await load(text.slice(0, cut))).toBeDefined()
  })
})
