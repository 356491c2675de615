#!/usr/bin/env node
// sitesync runs its TypeScript sources directly through tsx: one code path for the CLI, the tests and
// the container, with no build step to forget.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
