import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { AGENT_NODE_FLAGS, AGENT_SEMI_SPACE_MIB, relaunchWithYoungGeneration, youngGenerationOf, type Relaunch } from '../../src/cli/young-generation.ts'

/** relaunchWithYoungGeneration's calls of execve, for one process's argv, execArgv and environment. */
function relaunches (argv: string[], execArgv: string[] = [], env: NodeJS.ProcessEnv = {}): Array<{ file: string, args: string[], env: NodeJS.ProcessEnv }> {
  const calls: Array<{ file: string, args: string[], env: NodeJS.ProcessEnv }> = []
  const execve = ((file: string, args: string[], e: NodeJS.ProcessEnv) => { calls.push({ file, args, env: e }) }) as Relaunch['execve']
  relaunchWithYoungGeneration({ argv, execArgv, env, execPath: '/opt/node', execve })
  return calls
}

describe('the young generation of an agent', () => {
  it('reads the semi-space size a process was started with: its command line over NODE_OPTIONS, the last of several', () => {
    expect(youngGenerationOf([], undefined)).toBeUndefined()
    expect(youngGenerationOf(['--expose-gc'], '--enable-source-maps')).toBeUndefined()
    expect(youngGenerationOf(['--max-semi-space-size=32'], undefined)).toEqual({ semiSpaceMiB: 32, from: 'command line' })
    expect(youngGenerationOf(['--max-semi-space-size', '64'], undefined)).toEqual({ semiSpaceMiB: 64, from: 'command line' })
    expect(youngGenerationOf(['--max_semi_space_size=8'], undefined)).toEqual({ semiSpaceMiB: 8, from: 'command line' })
    expect(youngGenerationOf(['--max-semi-space-size=8', '--max-semi-space-size=16'], undefined)).toEqual({ semiSpaceMiB: 16, from: 'command line' })
    expect(youngGenerationOf([], ' --max-old-space-size=4096  --max-semi-space-size=8 ')).toEqual({ semiSpaceMiB: 8, from: 'NODE_OPTIONS' })
    expect(youngGenerationOf(['--max-semi-space-size=32'], '--max-semi-space-size=8')).toEqual({ semiSpaceMiB: 32, from: 'command line' })
    // a value node would refuse is not a size
    expect(youngGenerationOf(['--max-semi-space-size=lots'], undefined)).toBeUndefined()
  })

  it('relaunches `converge agent` started without one, with the same script, arguments and environment', () => {
    const env = { CONVERGE_LOG_LEVEL: 'debug' }
    expect(relaunches(['/opt/node', '/srv/converge/bin/converge.js', 'agent', '--config', 'us-east.yaml'], ['--enable-source-maps'], env)).toEqual([{
      file: '/opt/node',
      args: ['/opt/node', ...AGENT_NODE_FLAGS, '--enable-source-maps', '/srv/converge/bin/converge.js', 'agent', '--config', 'us-east.yaml'],
      env
    }])
    expect(AGENT_NODE_FLAGS).toEqual([`--max-semi-space-size=${AGENT_SEMI_SPACE_MIB}`])
  })

  it('leaves alone every other command, a size given by the operator, and a node that cannot replace a process', () => {
    expect(relaunches(['/opt/node', 'converge.js', 'status', '--url', 'http://127.0.0.1:7600'])).toEqual([])
    expect(relaunches(['/opt/node', 'converge.js'])).toEqual([])
    expect(relaunches(['/opt/node', 'converge.js', 'agent', '-c', 'a.yaml'], ['--max-semi-space-size=8'])).toEqual([])
    expect(relaunches(['/opt/node', 'converge.js', 'agent', '-c', 'a.yaml'], [], { NODE_OPTIONS: '--max-semi-space-size=64' })).toEqual([])
    expect(() => relaunchWithYoungGeneration({ argv: ['/opt/node', 'converge.js', 'agent'], execArgv: [], env: {}, execPath: '/opt/node', execve: undefined })).not.toThrow()
    // an execve that fails leaves the process as it was, to run on
    const failing = (() => { throw Object.assign(new Error('execve failed'), { code: 'EACCES' }) }) as Relaunch['execve']
    expect(() => relaunchWithYoungGeneration({ argv: ['/opt/node', 'converge.js', 'agent'], execArgv: [], env: {}, execPath: '/opt/node', execve: failing })).not.toThrow()
  })

  it('is a flag this Node takes, and this Node can replace a process', async () => {
    // V8 only warns about a flag it does not know: a Node whose V8 dropped this one fails here instead
    const { stdout } = await promisify(execFile)(process.execPath, ['--v8-options'], { maxBuffer: 16 * 1024 * 1024 })
    expect(stdout).toContain('  --max-semi-space-size (')
    expect(typeof (process as { execve?: unknown }).execve).toBe('function')
  })
})
