/**
 * The network between the regions: a LinkProxy for every ordered pair
 * (dialer → target), and every agent's config names its peers by their
 * proxy's port (with /p2p/<id>, so identities are still checked end to end).
 * An agent dials only the addresses in its config, so every connection
 * between two agents runs through one of these proxies, and a fault on a
 * link is a fault on every connection between the two.
 */
import { LinkProxy, type LinkShape, type LinkState, type LinkStats } from './link-proxy.ts'

export class Mesh {
  private readonly links = new Map<string, LinkProxy>()

  constructor (readonly regions: string[], private readonly random: () => number) {}

  private static key (from: string, to: string): string { return `${from}→${to}` }

  /** Listens on every link's port (the agents' own ports are picked after, so none can clash with these). */
  async start (): Promise<void> {
    for (const from of this.regions) {
      for (const to of this.regions) {
        if (from === to) continue
        const link = new LinkProxy({ name: Mesh.key(from, to), random: this.random })
        this.links.set(link.name, link)
        await link.listen()
      }
    }
  }

  /** Where each region's agent listens: every link to it forwards there. */
  setTargets (p2pPorts: Map<string, number>): void {
    for (const link of this.links.values()) link.targetPort = p2pPorts.get(link.name.split('→')[1]!)
  }

  /** The port `from` dials to reach `to`. */
  portFor (from: string, to: string): number {
    const link = this.links.get(Mesh.key(from, to))
    if (link === undefined) throw new Error(`no link ${Mesh.key(from, to)}`)
    return link.port
  }

  /** Both directions between two regions (a connection either one dialed). */
  between (a: string, b: string): LinkProxy[] {
    return [this.links.get(Mesh.key(a, b)), this.links.get(Mesh.key(b, a))].filter((l): l is LinkProxy => l !== undefined)
  }

  /** Every link touching `region`, optionally only those to `others`. */
  of (region: string, others?: string[]): LinkProxy[] {
    return (others ?? this.regions.filter(r => r !== region)).flatMap(o => this.between(region, o))
  }

  setState (links: LinkProxy[], state: LinkState): void { for (const l of links) l.setState(state) }
  setShape (links: LinkProxy[], shape: Partial<LinkShape>): void { for (const l of links) l.setShape(shape) }

  stats (): Array<{ link: string } & LinkStats> {
    return [...this.links.values()].map(l => ({ link: l.name, ...l.stats }))
  }

  async close (): Promise<void> {
    await Promise.all([...this.links.values()].map(async l => await l.close()))
    this.links.clear()
  }
}
