import { ConvergeError } from '../errors.ts'

export async function demoCommand (opts: { rows: number, drift: number, dir?: string }): Promise<void> {
  // the simulator lives beside the agent, not inside it: load it only for this command
  const { runDemo } = await import('../../cluster/demo.ts')
  const result = await runDemo(opts)
  if (!result.converged) throw new ConvergeError('CONVERGE_DEMO_FAILED', 'the demo cluster did not converge')
}
