/** sitesync's defaults as its own configuration parser fills them in, so the benchmark never restates them. */
import { parseConfig } from '../../src/config/load-config.ts';
import type { Config } from '../../src/config/config-schema.ts';

export function defaultConfig(): Config {
  return parseConfig({
    broker: { url: 'amqp://guest:guest@127.0.0.1:5672/' },
    sites: { one: { postgres: 'postgres://postgres@127.0.0.1/one' }, two: { postgres: 'postgres://postgres@127.0.0.1/two' } },
  });
}
