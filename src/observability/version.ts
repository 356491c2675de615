/** The sitesync version (package.json), for `--version` and the build_info metric. */
import pkg from '../../package.json' with { type: 'json' };

export const VERSION: string = pkg.version;
