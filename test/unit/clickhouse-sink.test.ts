/**
 * The ClickHouse sink on the ClickHouse engine embedded in this process (chdb): its SQL and the engine's
 * semantics (ReplacingMergeTree, FINAL, is_deleted, deduplication tokens) checked for real. The scenarios are
 * in test/conformance/harnesses/clickhouse.ts, shared with the live test. Without chdb they skip, saying how to
 * run them: `npm run test:clickhouse`.
 */
import { chdbBackend, clickhouseSinkScenarios } from '../conformance/harnesses/clickhouse.ts';

clickhouseSinkScenarios('embedded ClickHouse', await chdbBackend());
