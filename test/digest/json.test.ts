import { describe, expect, it } from 'vitest'
import { canonicalJson } from '../../src/digest/json.ts'
import { RowCodec } from '../../src/digest/row-codec.ts'
import { schemaFingerprint, type DatasetSchema } from '../../src/digest/schema.ts'
import { checkCanonicalRow } from '../../src/security/canonical-row.ts'
import { RowEncodingError } from '../../src/errors.ts'

describe('canonical JSON', () => {
  it('sorts keys and drops spacing by default; keeps the text as written with keepText', () => {
    const text = '{ "b": 1, "a": [ {"d": 2, "c": 1.50} ] }'
    expect(canonicalJson(text, 'c')).toBe('{"a":[{"c":1.5,"d":2}],"b":1}')
    expect(canonicalJson(text, 'c', true)).toBe(text)
    // data (not text) is written as JSON.stringify writes it: in its own key order when the text is kept
    expect(canonicalJson({ b: 1, a: 2 }, 'c')).toBe('{"a":2,"b":1}')
    expect(canonicalJson({ b: 1, a: 2 }, 'c', true)).toBe('{"b":1,"a":2}')
  })

  it('refuses text that is not JSON, kept or not, naming the column', () => {
    for (const keep of [false, true]) {
      expect(() => canonicalJson('{"a":', 'payload', keep)).toThrow(RowEncodingError)
      expect(() => canonicalJson('{"a":', 'payload', keep)).toThrow(/column "payload": not valid JSON/)
      expect(() => canonicalJson(undefined, 'payload', keep)).toThrow(/column "payload": not valid JSON/)
    }
  })

  it('digests two spellings of the same data apart only in a column that keeps its text, whose schema fingerprint differs', () => {
    const schema: DatasetSchema = { version: 1, columns: [{ name: 'id', type: 'integer' }, { name: 'doc', type: 'json' }], primaryKey: ['id'], ignoreColumns: [] }
    const kept: DatasetSchema = { ...schema, columns: [schema.columns[0]!, { name: 'doc', type: 'json', keepText: true }] }
    const digest = (s: DatasetSchema, doc: string): bigint => { const codec = new RowCodec(s); return codec.rowDigest(codec.encodeRow({ id: 1, doc })) }
    expect(digest(schema, '{"b":1,"a":2}')).toBe(digest(schema, '{"a": 2, "b": 1}'))
    expect(digest(kept, '{"b":1,"a":2}')).not.toBe(digest(kept, '{"a":2,"b":1}'))
    expect(digest(kept, '{"b":1,"a":2}')).toBe(digest(kept, '{"b":1,"a":2}'))
    expect(schemaFingerprint(kept)).not.toBe(schemaFingerprint(schema))
    // a schema without keepText keeps the fingerprint it always had
    expect(schemaFingerprint({ ...schema, columns: [schema.columns[0]!, { name: 'doc', type: 'json', keepText: false }] })).toBe(schemaFingerprint(schema))
  })

  it('takes a source row\'s kept JSON text as it is, and refuses one that is not JSON', () => {
    const codec = new RowCodec({ version: 1, columns: [{ name: 'id', type: 'integer' }, { name: 'doc', type: 'json', keepText: true }], primaryKey: ['id'], ignoreColumns: [] })
    const row = codec.encodeRow({ id: 7, doc: '{"z": 1,  "a": 2}' })
    expect(checkCanonicalRow(codec, row)[1]).toBe('{"z": 1,  "a": 2}')
    const plain = new RowCodec({ ...codec.schema, columns: [codec.columns[0]!, { name: 'doc', type: 'json' }] })
    const notJson = plain.encodeRow({ id: 7, doc: '{}' }).slice()
    // the same row with the JSON text cut short: {} → {" (same length, so the encoding stays well formed)
    notJson[notJson.length - 1] = 0x22
    expect(() => checkCanonicalRow(codec, notJson)).toThrow(/column "doc" is not a json/)
  })
})
