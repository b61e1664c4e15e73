/**
 * Reading processes' CPU from /proc (cluster/process-cpu.ts): the stat line's
 * fields, this process's own figures as it works, and a total over a set of
 * processes that counts each from its first reading.
 */
import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { CpuTotal, cpuMsOfStat, processCpuMs, processName } from '../../cluster/process-cpu.ts'

/** Spends about `ms` of CPU on this thread. */
function burn (ms: number): void {
  const until = performance.now() + ms
  let x = 0
  while (performance.now() < until) x += Math.sqrt(x + 1)
  if (x < 0) throw new Error('unreachable')
}

describe('process CPU from /proc', () => {
  it('reads utime and stime (fields 14 and 15, in 1/100 s) after a command name with spaces and parentheses', () => {
    const fields = ['S', '1', '2', '3', '0', '-1', '4194560', '100', '0', '0', '0', '123', '45', '0', '0', '20', '0', '1', '0', '99']
    expect(cpuMsOfStat(`4242 (a (b) c) ${fields.join(' ')}`)).toBe(1680)
    expect(cpuMsOfStat(`4242 (node) ${fields.join(' ')}`)).toBe(1680)
    expect(cpuMsOfStat('no command name here')).toBeUndefined()
    expect(cpuMsOfStat('4242 (node) S 1 2')).toBeUndefined()
  })

  it('sees this process spend CPU, and nothing of a pid that is gone', async () => {
    const before = processCpuMs(process.pid)
    expect(before).toBeGreaterThan(0)
    burn(200)
    const after = processCpuMs(process.pid)
    // the kernel counts in ticks of 10 ms, and on a busy machine this thread may get a fraction of the 200 ms: some of it shows
    expect(after! - before!).toBeGreaterThanOrEqual(20)
    expect(processName(process.pid)).toBeTypeOf('string')
    const child = spawn(process.execPath, ['-e', ''])
    await new Promise(resolve => child.once('exit', resolve))
    expect(processCpuMs(child.pid!)).toBeUndefined()
    expect(processName(child.pid!)).toBeUndefined()
  })

  it("totals a set of processes from each one's first reading, keeping what a process that ended spent", async () => {
    const total = new CpuTotal()
    // nothing read yet, or only pids that are not there: no figure at all
    expect(total.read([])).toBeUndefined()
    expect(total.read([2 ** 22 + 12345])).toBeUndefined()
    // a busy child: what it spent before its first reading is not counted
    const child = spawn(process.execPath, ['-e', 'const t = Date.now() + 5000; while (Date.now() < t);'])
    try {
      await new Promise(resolve => setTimeout(resolve, 300))
      expect(total.read([child.pid!, process.pid])).toBe(0)
      burn(150)
      await new Promise(resolve => setTimeout(resolve, 300))
      const second = total.read([child.pid!, process.pid])!
      // the child's 300 ms of spinning and this process's 150, less what ticks and a busy machine take off
      expect(second).toBeGreaterThanOrEqual(50)
      child.kill()
      await new Promise(resolve => child.once('exit', resolve))
      // gone: the total keeps what was read of it, and never goes down
      expect(total.read([child.pid!, process.pid])).toBeGreaterThanOrEqual(second)
      expect(total.read([process.pid])).toBeGreaterThanOrEqual(second)
    } finally {
      child.kill()
    }
  })
})
