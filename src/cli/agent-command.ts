import { Option, type Command } from 'commander'
import { ConfigError } from '../errors.ts'
import { applyHeapGrowth, DEFAULT_HEAP_GROWTH_PERCENT, parseHeapGrowth } from './heap-growth.ts'
import { youngGenerationOf } from './young-generation.ts'
import type { Progress } from './progress.ts'
import { parseLogLevel, parseMs, resolveSetting } from './settings.ts'

export interface AgentOptions {
  config: string
  logLevel?: string
  statusPort?: string
  drainDelay?: string
  stopTimeout?: string
  heapGrowth?: string
}

/**
 * Runs an agent until SIGTERM or SIGINT (or, when a supervisor started it
 * over IPC, until that supervisor goes), then stops it in order (see
 * lifecycle.ts). Settings: a flag wins over its CONVERGE_* variable, which
 * wins over the config file.
 */
export async function agentCommand (opts: AgentOptions): Promise<void> {
  // (a bad value ends here, before the agent loads)
  const heapGrowth = resolveSetting('heap-growth', { flag: opts.heapGrowth, env: 'CONVERGE_HEAP_GROWTH', default: DEFAULT_HEAP_GROWTH_PERCENT, parse: parseHeapGrowth })
  // loaded here, not with the command line: the other commands (and --help) need none of libp2p and the stores
  const [{ Agent }, { loadConfig }, { createLogger }, { runAgent, STOP_DEFAULTS }, { createProgress }] = await Promise.all([
    import('../agent/agent.ts'), import('../config/load.ts'), import('../observability/logger.ts'), import('./lifecycle.ts'), import('./progress.ts')
  ])
  const config = await loadConfig(opts.config)
  const level = resolveSetting('log-level', { flag: opts.logLevel, env: 'CONVERGE_LOG_LEVEL', default: 'info', parse: parseLogLevel })
  const port = resolveSetting('status-port', { flag: opts.statusPort, env: 'CONVERGE_STATUS_PORT', config: config.status?.port, default: undefined as number | undefined, parse: parsePort })
  if (port.value !== undefined) config.status = { host: config.status?.host ?? '127.0.0.1', tokens: config.status?.tokens ?? [], port: port.value }
  const drainDelayMs = resolveSetting('drain-delay', { flag: opts.drainDelay, env: 'CONVERGE_DRAIN_DELAY_MS', default: STOP_DEFAULTS.drainDelayMs, parse: parseMs }).value
  const stopTimeoutMs = resolveSetting('stop-timeout', { flag: opts.stopTimeout, env: 'CONVERGE_STOP_TIMEOUT_MS', default: STOP_DEFAULTS.stopTimeoutMs, parse: parseMs }).value

  // the first full scan of a large store takes a while: on a terminal, show how far it is
  const bars = new Map<string, Progress>()
  const logger = createLogger({ level: level.value, region: config.region })
  // taken at the process's start (bin/converge.js relaunches an agent started without one): said, as the heap growth is
  const young = youngGenerationOf(process.execArgv, process.env.NODE_OPTIONS)
  logger.info(young === undefined ? { semiSpaceMiB: null, from: 'V8 default' } : young, 'young generation')
  const agent = new Agent({
    config,
    logger,
    onIndexProgress: (dataset, p) => {
      let bar = bars.get(dataset)
      if (bar === undefined) {
        for (const other of bars.values()) other.done()
        bar = createProgress(`${p.phase === 'load' ? 'loading' : 'indexing'} ${dataset}`)
        bars.set(dataset, bar)
      }
      bar.update(p.rows)
    },
    // a deep pass rereads every store: the rows the index holds give its length
    onValidationProgress: (dataset, p) => {
      const key = `validate:${dataset}`
      let bar = bars.get(key)
      if (bar === undefined) { bar = createProgress(`validating ${dataset}`, { total: p.expected }); bars.set(key, bar) }
      bar.update(p.rows)
      if (p.rows >= p.expected) { bar.done(); bars.delete(key) }
    }
  })
  try {
    await runAgent(agent, {
      drainDelayMs,
      stopTimeoutMs,
      // once the indexes are built: a first build's memory stays what V8's own heuristics make it
      onStarted: () => {
        applyHeapGrowth(heapGrowth.value)
        logger.info({ heapGrowthPercent: heapGrowth.value, from: heapGrowth.source }, 'heap growth set')
      }
    })
  } finally {
    for (const bar of bars.values()) bar.done()
  }
  // an open IPC channel would keep the process alive after the agent stopped
  if (process.connected) process.disconnect()
}

function parsePort (text: string, what: string): number {
  const v = parseMs(text, what)
  if (v > 65535) throw new ConfigError(`${what}: "${text}" is not a port`)
  return v
}

export function registerAgentCommand (program: Command): void {
  program.command('agent')
    .description('run the sidecar agent for one region')
    .addOption(new Option('-c, --config <file>', 'config file (YAML or JSON)').env('CONVERGE_CONFIG').makeOptionMandatory())
    .addOption(new Option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent [env CONVERGE_LOG_LEVEL; default info]'))
    .addOption(new Option('--status-port <port>', 'status port, over the config file\'s status.port (0: any free port) [env CONVERGE_STATUS_PORT]'))
    .addOption(new Option('--drain-delay <ms>', 'after SIGTERM, how long /readyz answers 503 before the agent stops [env CONVERGE_DRAIN_DELAY_MS; default 0]'))
    .addOption(new Option('--stop-timeout <ms>', 'the most a stop may take before the process exits with code 1 [env CONVERGE_STOP_TIMEOUT_MS; default 30000]'))
    .addOption(new Option('--heap-growth <percent>', `how far the heap may grow past what the last full garbage collection found alive, 0 for V8's own heuristics [env CONVERGE_HEAP_GROWTH; default ${DEFAULT_HEAP_GROWTH_PERCENT}]`))
    .addHelpText('after', [
      '',
      'Settings: a flag wins over its environment variable, which wins over the config file.',
      'On SIGTERM or SIGINT: /readyz turns 503, no new sync or fix starts, a fix in flight is finished,',
      'the audit is flushed, libp2p stops. A second signal exits at once.',
      'Exit code: 0 after a clean stop, 1 on a run-time failure or a stop over its bound, 2 on a bad config.',
      '',
      'Example:',
      '  converge agent --config /etc/converge/us-east.yaml',
      '  CONVERGE_LOG_LEVEL=debug converge agent --config eu-west.yaml --status-port 7601',
      '  converge agent --config eu-west.yaml --drain-delay 5000 --stop-timeout 20000'
    ].join('\n'))
    .action(async (opts: AgentOptions) => { await agentCommand(opts) })
}
