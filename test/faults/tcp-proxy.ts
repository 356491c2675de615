/**
 * A TCP proxy between sitesync and a service, to break the network on purpose:
 * - cut: every connection is torn down (RST) and new ones are refused until it heals;
 * - stall: connections stay open but no byte moves either way until it heals (a hung network).
 */
import net from 'node:net';

export class TcpProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  private mode: 'pass' | 'cut' | 'stall' = 'pass';
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {
    this.server = net.createServer((client) => this.accept(client));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  private accept(client: net.Socket): void {
    if (this.mode === 'cut') {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(this.targetPort, this.targetHost);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    this.pairs.add(pair);
    const drop = (): void => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
    if (this.mode === 'stall') this.pause(pair);
  }

  private pause([a, b]: [net.Socket, net.Socket]): void {
    a.unpipe(b);
    b.unpipe(a);
    a.pause();
    b.pause();
  }

  /** Tears every connection down and refuses new ones for `ms`. */
  async cut(ms: number): Promise<void> {
    this.mode = 'cut';
    for (const [a, b] of this.pairs) {
      a.resetAndDestroy();
      b.destroy();
    }
    this.pairs.clear();
    await new Promise((r) => setTimeout(r, ms));
    this.mode = 'pass';
  }

  /** Moves no byte on any connection, old or new, for `ms`; then everything flows again. */
  async stall(ms: number): Promise<void> {
    this.mode = 'stall';
    for (const pair of this.pairs) this.pause(pair);
    await new Promise((r) => setTimeout(r, ms));
    this.mode = 'pass';
    for (const [a, b] of this.pairs) {
      a.pipe(b);
      b.pipe(a);
      a.resume();
      b.resume();
    }
  }

  async close(): Promise<void> {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
