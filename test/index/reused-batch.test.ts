import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ReusedBatch } from '../../src/index/reused-batch.ts'
import { StateDb } from '../../src/index/state-db.ts'

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
const text = (b: Uint8Array | undefined): string | undefined => b === undefined ? undefined : new TextDecoder().decode(b)

describe('ReusedBatch', () => {
  let dir: string
  let state: StateDb

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'converge-reused-batch-'))
    state = new StateDb(join(dir, 'state'))
    await state.open()
  })

  afterEach(async () => {
    if (state.db.status === 'open') await state.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('writes, clears and writes again through one native batch, each write holding only its own puts', async () => {
    const batch = new ReusedBatch(state.db)
    expect(batch.reusing).toBe(true)
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 100; i++) batch.put(bytes(`r${round}-${String(i).padStart(3, '0')}`), bytes(`value ${round}/${i}`))
      expect(batch.size).toBeGreaterThan(0)
      await batch.write()
      expect(batch.size).toBe(0)
      // each round's records are removed after it: a write that carried an earlier round's puts again would bring them back
      const keys = (await state.db.keys().all()).map(k => text(k)!)
      expect(keys).toHaveLength(100)
      expect(keys.every(k => k.startsWith(`r${round}-`))).toBe(true)
      expect(text(await state.db.get(bytes(`r${round}-042`)))).toBe(`value ${round}/42`)
      await state.db.clear()
    }
    // nothing put: nothing written, no error
    await batch.write()
    await batch.close()
    expect(await state.db.keys().all()).toHaveLength(0)
  })

  it('copies a key and a value when they are put, so the caller can fill its buffers again before the write', async () => {
    const batch = new ReusedBatch(state.db)
    const key = bytes('a')
    const buffer = bytes('first')
    batch.put(key, buffer)
    key.set(bytes('b'))
    buffer.set(bytes('XXXXX'))
    batch.put(key, buffer.subarray(0, 3))
    await batch.write()
    expect(text(await state.db.get(bytes('a')))).toBe('first')
    expect(text(await state.db.get(bytes('b')))).toBe('XXX')
    await batch.close()
  })

  it('falls back to a public batch per write when the database has write listeners, and they see every write', async () => {
    const seen: string[] = []
    state.db.on('write', (ops: Array<{ key: Uint8Array }>) => { for (const op of ops) seen.push(text(op.key)!) })
    const batch = new ReusedBatch(state.db)
    expect(batch.reusing).toBe(false)
    // the key's buffer and the value's filled again between puts, as a caller may
    const key = bytes('k1')
    const buffer = bytes('one')
    batch.put(key, buffer)
    key.set(bytes('k2'))
    buffer.set(bytes('two'))
    batch.put(key, buffer)
    await batch.write()
    batch.put(bytes('k3'), bytes('three'))
    await batch.write()
    await batch.close()
    expect(seen).toEqual(['k1', 'k2', 'k3'])
    expect(text(await state.db.get(bytes('k1')))).toBe('one')
    expect(text(await state.db.get(bytes('k2')))).toBe('two')
    expect(text(await state.db.get(bytes('k3')))).toBe('three')
  })

  it('deletes as well as puts, in the same write, whether it uses its batch again or falls back', async () => {
    for (const listening of [false, true]) {
      await state.db.clear()
      if (listening) state.db.on('write', () => {})
      const batch = new ReusedBatch(state.db)
      expect(batch.reusing).toBe(!listening)
      for (const k of ['a', 'b', 'c']) batch.put(bytes(k), bytes(`${k}1`))
      await batch.write()
      // the key's buffer filled again after the delete: the delete keeps the key it was given
      const key = bytes('b')
      batch.del(key)
      key.set(bytes('c'))
      batch.put(bytes('d'), bytes('d1'))
      await batch.write()
      await batch.close()
      const left = (await state.db.iterator().all()).map(([k, v]) => `${text(k)}=${text(v)}`)
      expect(left, listening ? 'falling back' : 'used again').toEqual(['a=a1', 'c=c1', 'd=d1'])
    }
  })

  it('drops what was put since the last write when told to, so the next write carries none of it', async () => {
    for (const listening of [false, true]) {
      await state.db.clear()
      if (listening) state.db.on('write', () => {})
      const batch = new ReusedBatch(state.db)
      batch.put(bytes('kept'), bytes('1'))
      await batch.write()
      batch.put(bytes('dropped'), bytes('2'))
      batch.del(bytes('kept'))
      await batch.discard()
      expect(batch.size).toBe(0)
      batch.put(bytes('later'), bytes('3'))
      await batch.write()
      await batch.close()
      const left = (await state.db.iterator().all()).map(([k, v]) => `${text(k)}=${text(v)}`)
      expect(left, listening ? 'falling back' : 'used again').toEqual(['kept=1', 'later=3'])
    }
  })

  it('refuses to write once the database is closed, with an error that says so, and is left empty', async () => {
    const batch = new ReusedBatch(state.db)
    batch.put(bytes('k'), bytes('v'))
    await state.close()
    await expect(batch.write()).rejects.toMatchObject({ code: 'CONVERGE_STORE_NOT_OPEN' })
    expect(batch.size).toBe(0)
  })
})
