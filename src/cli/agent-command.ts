import { Agent } from '../agent/agent.ts'
import { loadConfig } from '../config/load.ts'

/** Runs an agent until SIGTERM or SIGINT, then stops it in order and exits. */
export async function agentCommand (opts: { config: string }): Promise<void> {
  const config = await loadConfig(opts.config)
  const agent = new Agent({ config })
  await agent.start()
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      agent.log.info({ signal }, 'stopping')
      agent.stop().then(resolve, (err: Error) => { agent.log.error({ err: err.message }, 'stop failed'); resolve() })
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
}
