import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).href

/**
 * The packages loaded by building the command line and running `args` in a
 * child process: the CommonJS ones (the database drivers among them) as
 * Node's module cache lists them.
 */
async function packagesLoaded (args: string[]): Promise<string[]> {
  const script = `
    const { createRequire } = await import('node:module')
    const { run } = await import(${JSON.stringify(MAIN)})
    const code = await run(${JSON.stringify(args)})
    const cache = createRequire(import.meta.url).cache
    const names = new Set(Object.keys(cache).map(p => /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(p)?.[1]).filter(Boolean))
    process.stderr.write(JSON.stringify({ code, names: [...names] }))`
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    child.stderr.on('data', d => { err += String(d) })
    child.on('exit', code => {
      const last = err.slice(err.lastIndexOf('{"code"'))
      try { resolve((JSON.parse(last) as { names: string[] }).names) } catch { reject(new Error(`child exited ${code}: ${err}`)) }
    })
  })
}

describe('the command line loads what a command needs when it runs', () => {
  it('--help and status --help load no database driver (PostgreSQL, LevelDB)', async () => {
    for (const args of [['--help'], ['status', '--help']]) {
      const names = await packagesLoaded(args)
      // tsx is (it loads the sources): the check sees what it should
      expect(names).toContain('tsx')
      for (const heavy of ['pg', 'classic-level', 'level']) expect(names, `${args.join(' ')} loaded ${heavy}`).not.toContain(heavy)
    }
  })
})
