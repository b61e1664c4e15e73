/**
 * The size of V8's young generation for an agent (`--max-semi-space-size`).
 *
 * A replica's repair of 10,000 rows allocates some 100 MB in half a second,
 * and most of what it allocates lives until the fix is applied: the rows
 * read, their keys, the source's answer, the fix. With V8's default
 * semi-spaces of 16 MiB the young generation is collected about seven
 * times in such a repair, and each collection copies everything of the
 * repair still alive (perf over the section-5 scenario of `npm run bench`:
 * garbage collection was a fifth of a replica's CPU). Semi-spaces of 32 MiB
 * halve the collections: within one run of that scenario a replica's agent
 * with them took 8 % less CPU a round than the other replica's without
 * (265 against 290 ms, and 240 against 260 ms swapped), for about 25 MiB
 * more peak RSS per agent; in section 5's own figure the difference stays
 * within the spread from run to run (docs/convergence-vs-copy.md).
 *
 * V8 takes the size only when the process starts (setting the flag later
 * changes nothing), so it is a flag on the node command line: the cluster
 * simulator's launcher passes it, and `converge agent` started without it
 * puts itself in the place of a node process started with it
 * (relaunchWithYoungGeneration). An operator's own `--max-semi-space-size`,
 * on node's command line or in NODE_OPTIONS, is kept as given.
 */

/** The agent's semi-space size, in MiB (V8's default on 64-bit machines: 16). */
export const AGENT_SEMI_SPACE_MIB = 32

const FLAG = '--max-semi-space-size'

/** Node's command-line flags an agent process starts with. */
export const AGENT_NODE_FLAGS: readonly string[] = [`${FLAG}=${AGENT_SEMI_SPACE_MIB}`]

/** The semi-space size a process was started with, and where it came from; undefined where it has V8's default. */
export interface YoungGeneration { semiSpaceMiB: number, from: 'command line' | 'NODE_OPTIONS' }

/**
 * The `--max-semi-space-size` this process was started with: node's own
 * command line (execArgv) wins over NODE_OPTIONS, as in node itself, and the
 * last of several wins. Undefined where neither gives one.
 */
export function youngGenerationOf (execArgv: readonly string[], nodeOptions: string | undefined): YoungGeneration | undefined {
  const fromArgs = lastSemiSpace(execArgv)
  if (fromArgs !== undefined) return { semiSpaceMiB: fromArgs, from: 'command line' }
  const fromOptions = lastSemiSpace((nodeOptions ?? '').split(/\s+/).filter(s => s !== ''))
  return fromOptions === undefined ? undefined : { semiSpaceMiB: fromOptions, from: 'NODE_OPTIONS' }
}

function lastSemiSpace (args: readonly string[]): number | undefined {
  let found: number | undefined
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    // node takes the flag with `=` or as two words, and V8 the underscore spelling too
    const normal = a.replace(/_/g, '-')
    if (normal.startsWith(`${FLAG}=`)) found = Number(normal.slice(FLAG.length + 1))
    else if (normal === FLAG && i + 1 < args.length) found = Number(args[++i])
  }
  return found !== undefined && Number.isFinite(found) ? found : undefined
}

export interface Relaunch {
  argv: readonly string[]
  execArgv: readonly string[]
  env: NodeJS.ProcessEnv
  execPath: string
  /** process.execve: undefined where node has none (before 22.15, or Windows). */
  execve: ((file: string, args: string[], env: NodeJS.ProcessEnv) => never) | undefined
}

/**
 * For `converge agent` started without a young-generation size of its
 * own: replaces this process (same pid, same standard streams, same
 * environment) by node started with AGENT_NODE_FLAGS and the same script
 * and arguments. Returns without doing anything for any other command, when
 * the size was given, or where node cannot replace a process (none, or a
 * failed execve: the agent then runs with V8's default, and says so when
 * it starts).
 */
export function relaunchWithYoungGeneration (r: Relaunch): void {
  if (r.argv[2] !== 'agent' || r.execve === undefined) return
  if (youngGenerationOf(r.execArgv, r.env.NODE_OPTIONS) !== undefined) return
  try {
    r.execve(r.execPath, [r.execPath, ...AGENT_NODE_FLAGS, ...r.execArgv, ...r.argv.slice(1)], r.env)
  } catch {
    // (process.execve is experimental in Node 22) a process that could not be replaced runs on as it is: with
    // V8's default young generation, which the agent says when it starts
  }
}

/** relaunchWithYoungGeneration for this process. */
export function relaunchThisAgent (): void {
  const execve = (process as { execve?: Relaunch['execve'] }).execve
  relaunchWithYoungGeneration({ argv: process.argv, execArgv: process.execArgv, env: process.env, execPath: process.execPath, execve: typeof execve === 'function' ? execve.bind(process) : undefined })
}
