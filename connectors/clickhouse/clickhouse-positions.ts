/**
 * ClickHouse positions: there are none. A ClickHouse site only receives (sitesync reads no log of it), so no
 * position is of this kind; it keeps the positions of the sites it applies from as they travel. The format
 * recognises nothing, so that a position typed for a ClickHouse site is refused rather than taken for another
 * kind's.
 */
import type { PositionFormat } from '../../src/connector.ts';

export const clickhousePositions: PositionFormat = {
  isPosition: () => false,
  parse: () => null,
  example: '(none: a ClickHouse site has no log)',
  describe: (position) => position,
};
