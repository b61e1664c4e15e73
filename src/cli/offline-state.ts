/**
 * A stopped agent's LevelDB (DIR/state), opened by a command rather than by
 * the agent: LevelDB admits one process at a time, so a running agent
 * holding it is told apart (CONVERGE_AGENT_RUNNING).
 */
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { AgentRunningError, ConfigError } from '../errors.ts'
import type { StateDb } from '../index/state-db.ts'

/** Opens the agent's LevelDB (at DIR/state, as the agent does) without creating anything. */
export async function openOfflineState (dataDir: string): Promise<StateDb> {
  const dir = await stat(dataDir).catch(() => undefined)
  if (dir?.isDirectory() !== true) throw new ConfigError(`no data directory ${dataDir}`)
  const path = join(dataDir, 'state')
  // a LevelDB directory always has a CURRENT file; without one, opening would only say it failed
  if (!await hasState(dataDir)) throw new ConfigError(`${dataDir} holds no agent state (no LevelDB at ${path})`)
  // LevelDB's native binding only when a command needs it (see main.ts)
  const { StateDb } = await import('../index/state-db.ts')
  const state = new StateDb(path)
  try {
    await state.db.open({ createIfMissing: false })
  } catch (err) {
    if ((err as { cause?: { code?: string } }).cause?.code === 'LEVEL_LOCKED') throw new AgentRunningError(dataDir, { cause: err })
    throw err
  }
  return state
}

/** Whether DIR holds an agent's state at all (an agent that never ran there has none). */
export async function hasState (dataDir: string): Promise<boolean> {
  return (await stat(join(dataDir, 'state', 'CURRENT')).catch(() => undefined))?.isFile() === true
}

/** Throws AgentRunningError while an agent runs on DIR; an agent that never ran there is not running. */
export async function ensureAgentStopped (dataDir: string): Promise<void> {
  if (!await hasState(dataDir)) return
  await (await openOfflineState(dataDir)).close()
}
