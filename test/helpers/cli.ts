import { spawn } from 'node:child_process'

const BIN = new URL('../../bin/converge.js', import.meta.url).pathname

/** Runs the converge command as a real child process. */
export async function converge (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise(resolve => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''; let stderr = ''
    child.stdout.on('data', d => { stdout += String(d) })
    child.stderr.on('data', d => { stderr += String(d) })
    child.on('exit', code => resolve({ code: code ?? -1, stdout, stderr }))
  })
}
