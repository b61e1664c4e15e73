import { Agent } from '../agent/agent.ts'
import { loadConfig } from '../config/load.ts'

/** Runs an agent until SIGTERM or SIGINT (or, when a supervisor started it over IPC, until that supervisor goes), then stops it in order. */
export async function agentCommand (opts: { config: string }): Promise<void> {
  const config = await loadConfig(opts.config)
  const agent = new Agent({ config })
  let stopRequested: string | undefined
  let requestStop = (reason: string): void => { stopRequested ??= reason }
  process.once('SIGTERM', () => requestStop('SIGTERM'))
  process.once('SIGINT', () => requestStop('SIGINT'))
  if (process.send !== undefined) process.once('disconnect', () => requestStop('supervisor exited'))
  await agent.start()
  await new Promise<void>((resolve) => {
    requestStop = (reason: string): void => {
      agent.log.info({ reason }, 'stopping')
      agent.stop().then(resolve, (err: Error) => { agent.log.error({ err: err.message }, 'stop failed'); resolve() })
    }
    // a stop asked for while starting, or a supervisor already gone, takes effect now
    if (stopRequested !== undefined) requestStop(stopRequested)
    else if (process.send !== undefined && !process.connected) requestStop('supervisor exited')
  })
  // an open IPC channel would keep the process alive after the agent stopped
  if (process.connected) process.disconnect()
}
