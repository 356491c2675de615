/**
 * DuckDB positions: there are none. A DuckDB site only receives (it has no log that sitesync reads), so no
 * transaction ever comes from one and no position is of this kind. The format recognises nothing, so that a
 * position typed for a DuckDB site (`sitesync replay --from …`) is refused rather than taken for another
 * kind's.
 */
import type { PositionFormat } from '../../src/connector.ts';

export const duckdbPositions: PositionFormat = {
  isPosition: () => false,
  parse: () => null,
  example: '(none: a DuckDB site captures nothing)',
  // Never asked for a position of its own; shows whatever it is given as it is.
  describe: (position) => position,
};
