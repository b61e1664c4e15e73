import { existsSync } from 'node:fs'
import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../src/agent/agent.ts'
import { orderRow, ordersCodec as codec, seedOrders } from '../../cluster/orders.ts'
import { agentConfig, allRows, startAgent, tempDir, waitFor, withOrdersStore } from '../helpers/agents.ts'

const CHROMIUM = process.env.CONVERGE_TEST_CHROMIUM ?? '/usr/bin/chromium'
const ADMIN = 'ada-admin-token-000000004'
const ROWS = 500

/** Headless, no sandbox (root in CI), and nothing that reaches the network on its own. */
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

/**
 * The dashboard in headless Chromium with a real agent behind it: the page
 * loads, shows a drift injected into the replica (its chart and its pending
 * review with the diff), and an approval clicked on the page applies the fix;
 * then the admin's rollback button undoes it. Without Chromium the test is
 * skipped, except in CI (CI=true), where .ci/run installs it.
 */
describe.skipIf(!existsSync(CHROMIUM) && process.env.CI !== 'true')('dashboard in headless Chromium', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let sot: Agent
  let replica: Agent
  let browser: BrowserContext

  beforeAll(async () => {
    dir = await tempDir()
    for (const region of ['sot', 'b']) await withOrdersStore(join(dir.path, region, 'orders'), async store => { await seedOrders(store, 0, ROWS) })
    const tokenFile = join(dir.path, 'ada.token')
    await writeFile(tokenFile, ADMIN)
    await chmod(tokenFile, 0o600)
    sot = await startAgent(agentConfig(dir.path, 'sot', [], ['sot']))
    const config = agentConfig(dir.path, 'b', [{ region: 'sot', address: sot.listenAddresses[0]! }], ['sot'], { status: { port: 0, tokens: [{ name: 'ada', role: 'admin', tokenFile }] } })
    config.datasets[0]!.rule = 'review'
    replica = await startAgent(config)
    await waitFor('the replica in sync', () => replica.datasets.get('orders')!.state === 'in-sync', 20_000)
    // a fresh profile directory for each run
    browser = await chromium.launchPersistentContext(join(dir.path, 'chromium-profile'), { executablePath: CHROMIUM, headless: true, chromiumSandbox: false, args: CHROMIUM_ARGS })
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await replica?.stop()
    await sot?.stop()
    await dir?.remove()
  })

  const sameAsSot = async (): Promise<boolean> =>
    JSON.stringify([...(await allRows(sot.datasets.get('orders')!.store))].sort()) === JSON.stringify([...(await allRows(replica.datasets.get('orders')!.store))].sort())

  it('loads, shows an injected drift and its review, and an approval from the page applies the fix; a rollback from the page undoes it', async () => {
    const page = await browser.newPage()
    const problems: string[] = []
    page.on('pageerror', err => problems.push(err.message))
    page.on('console', msg => { if (msg.type() === 'error') problems.push(msg.text()) })
    const text = async (selector: string): Promise<string> => (await page.textContent(selector)) ?? ''
    await page.goto(`${replica.statusUrl!}/dashboard?refresh=300`)
    await page.waitForSelector('body[data-loaded="true"]')
    expect(await page.textContent('#agent')).toContain('b · test')
    expect(await page.textContent('#health')).toBe('ready')
    expect(await page.textContent('#datasets tr[data-dataset="orders"] .state')).toBe('in-sync')
    expect(await page.textContent('#peers tr[data-region="sot"]')).toContain('yes')

    await page.fill('#token', ADMIN)
    await page.click('#save-token')
    await waitFor('the page to know the caller', async () => await text('#whoami') === 'ada (admin)', 10_000)

    // drift behind the agent's back: three rows changed, one deleted; the review rule holds the fix
    await replica.datasets.get('orders')!.store.apply({ upserts: [1, 2, 3].map(id => codec.encodeRow(orderRow(id, 9))), deletes: [codec.encodeKey({ order_id: 10 })], origin: 'test' })
    const review = await page.waitForSelector('.review[data-review]', { timeout: 20_000 })
    await waitFor('the drift in the table', async () => await text('#datasets tr[data-dataset="orders"] .drift') === '4', 10_000)
    expect(await page.getAttribute('#drift-chart polyline[data-dataset="orders"]', 'data-max')).toBe('4')
    expect(await page.textContent('#datasets tr[data-dataset="orders"] .pending')).toBe('1')
    expect(await page.textContent('#datasets tr[data-dataset="orders"] .state')).toBe('held')
    const ops = await review.$$eval('.diff tr[data-op]', rows => rows.map(r => r.getAttribute('data-op')))
    expect(ops).toContain('update')
    expect(ops).toContain('insert') // the deleted row comes back
    expect(await sameAsSot()).toBe(false)
    await page.screenshot({ path: join(process.env.CONVERGE_SCREENSHOT_DIR ?? dir.path, 'review.png'), fullPage: true })

    await page.fill('.review input.reason', 'checked with billing')
    await page.click('.review button.approve')
    await waitFor('the approval to be reported', async () => /applied/.test(await text('#message')), 10_000)
    await waitFor('the replica to equal the source', sameAsSot, 10_000)
    await waitFor('the page to show the dataset in sync', async () => await text('#datasets tr[data-dataset="orders"] .state') === 'in-sync', 10_000)
    expect(await page.$('.review[data-review]')).toBeNull()
    const fixRow = await page.waitForSelector('#fixes tr[data-fix]')
    expect(await fixRow.textContent()).toContain('ada')
    // one fix, the approved one (a sync applied none of its own), counted among the dataset's fixes
    expect(await page.$$('#fixes tr[data-fix]')).toHaveLength(1)
    expect(replica.datasets.get('orders')!.counters).toMatchObject({ fixes: 1, reviewsRaised: 1, rollbacks: 0 })
    expect(await replica.reviews.pendingCount()).toBe(0)

    // an admin may roll the fix back from the page
    await page.fill('#fixes tr[data-fix] input.reason', 'wrong snapshot')
    await page.click('#fixes tr[data-fix] button.rollback')
    await waitFor('the rollback to be reported', async () => /rolled back/.test(await text('#message')), 10_000)
    expect(await sameAsSot()).toBe(false)
    expect(replica.datasets.get('orders')!.counters).toMatchObject({ fixes: 1, rollbacks: 1 })
    expect(problems).toEqual([])
  }, 60_000)
})
