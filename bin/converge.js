#!/usr/bin/env node
// The `converge` command. Runs the TypeScript sources directly through tsx,
// so there is no build step between a checkout and a running agent.
const [major] = process.versions.node.split('.').map(Number)
if (major < 22) {
  process.stderr.write(`converge needs Node.js 22 or newer (this is ${process.versions.node}).\n` +
    'Run it through scripts/run (it fetches Node 22 from the npm registry), e.g. bash scripts/run npx converge --help\n')
  process.exit(2)
}
const { register } = await import('tsx/esm/api')
register()
// an agent runs with a larger young generation, which V8 takes only at a process's start: see young-generation.ts
const { relaunchThisAgent } = await import('../src/cli/young-generation.ts')
relaunchThisAgent()
const { run } = await import('../src/cli/main.ts')
process.exitCode = await run(process.argv.slice(2))
