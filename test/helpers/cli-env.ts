import { spawn } from 'node:child_process'

const BIN = new URL('../../bin/converge.js', import.meta.url).pathname

export interface CliResult { code: number, stdout: string, stderr: string }

/**
 * Runs the converge command as a real child process with `env` added to a
 * copy of this process's environment from which every CONVERGE_* variable is
 * removed first (so a token or URL set around the test run cannot leak in).
 * Killed after `timeoutMs`; a killed run resolves with code -1.
 */
export async function convergeEnv (args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<CliResult> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CONVERGE_')))
  return await new Promise(resolve => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...base, ...env } })
    let stdout = ''; let stderr = ''
    child.stdout.on('data', d => { stdout += String(d) })
    child.stderr.on('data', d => { stderr += String(d) })
    const timer = setTimeout(() => { stderr += `\n(killed after ${timeoutMs} ms)`; child.kill('SIGKILL') }, timeoutMs)
    child.on('close', code => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }) })
  })
}
