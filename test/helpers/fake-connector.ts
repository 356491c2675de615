/**
 * The in-memory fakes as a connector (kind `fake`), so that the runners, the pipeline and the registry are
 * tested with them exactly as with a real database: a site says `database: {kind: fake, url: fake://NAME}`
 * and its source reads the FakeLog, its sink writes the FakeStore, of that name.
 */
import type { Connector, ConnectorRegistry } from '../../src/connector.ts';
import { CONNECTORS } from '../../connectors/index.ts';
import { FakeLog, FakeSource, FAKE_KIND } from './fake-source.ts';
import { FakeSink, FakeStore } from './fake-sink.ts';

export interface FakeDatabases {
  readonly logs: Map<string, FakeLog>;
  readonly stores: Map<string, FakeStore>;
}

const FAKE_URL = /^fake:\/\/([a-z0-9_]+)$/;

export function fakeConnector(databases: FakeDatabases): Connector {
  const nameOf = (url: string): string => FAKE_URL.exec(url)![1]!;
  const log = (url: string): FakeLog => {
    const name = nameOf(url);
    if (!databases.logs.has(name)) databases.logs.set(name, new FakeLog());
    return databases.logs.get(name)!;
  };
  const store = (url: string): FakeStore => {
    const name = nameOf(url);
    if (!databases.stores.has(name)) databases.stores.set(name, new FakeStore());
    return databases.stores.get(name)!;
  };
  return {
    kind: FAKE_KIND,
    urlExample: 'fake://NAME',
    positions: {
      isPosition: (p) => /^[0-9A-F]{16}$/.test(p),
      parse: (text) => (/^[0-9A-Fa-f]{16}$/.test(text) ? text.toUpperCase() : null),
      describe: (p) => `#${Number.parseInt(p, 16)}`,
      example: '0000000000000001',
    },
    checkUrl: (url) => (FAKE_URL.test(url) ? null : 'is not fake://NAME'),
    createSource: ({ site, url, config }) => new FakeSource({ site, log: log(url), maxPartBytes: config.capture.maxMessageBytes }),
    createSink: ({ site, url }) => new FakeSink(site, store(url)),
    async readStatus(url, _site, sources) {
      const l = log(url);
      const s = store(url);
      return {
        capture: { name: `fake log ${nameOf(url)}`, exists: true, active: false, confirmed: l.confirmedCheckpoint, current: l.head, lagBytes: 0, retainedBytes: null, release: 'nothing' },
        applied: sources.map((source) => ({ source, name: 'fake progress', position: s.progress.get(source)?.position ?? null })),
      };
    },
  };
}

/** The real connectors and the fake one. */
export function withFake(databases: FakeDatabases): ConnectorRegistry {
  return new Map([...CONNECTORS, [FAKE_KIND, fakeConnector(databases)]]);
}
