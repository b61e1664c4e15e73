/**
 * Temporary directories under os.tmpdir(), removed at the end of the run,
 * also when the run fails or is interrupted.
 */
import { rmSync } from 'node:fs'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const created = new Set<string>()

function removeAllSync (): void {
  for (const dir of created) rmSync(dir, { recursive: true, force: true })
  created.clear()
}

let hooked = false
function hookSignals (): void {
  if (hooked) return
  hooked = true
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { removeAllSync(); process.exit(130) })
  }
  process.once('exit', removeAllSync)
}

export async function makeTempDir (label: string): Promise<string> {
  hookSignals()
  const dir = await mkdtemp(join(tmpdir(), `converge-bench-${label}-`))
  created.add(dir)
  return dir
}

export async function removeTempDir (dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
  created.delete(dir)
}

export async function removeAllTempDirs (): Promise<void> {
  for (const dir of [...created]) await removeTempDir(dir)
}

/** Bytes of all files under a directory. */
export async function directoryBytes (dir: string): Promise<number> {
  let total = 0
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    total += entry.isDirectory() ? await directoryBytes(path) : (await stat(path)).size
  }
  return total
}
