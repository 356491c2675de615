/**
 * Values travel between sites as PostgreSQL's own text forms, which is lossless only when both ends read
 * and write them with the same settings. Every connection sitesync opens (the replication connection whose
 * walsender formats the values, and the applying connection that parses them) uses these.
 *
 * synchronous_commit=on: a commit sitesync waits for must be on disk whatever the server's default
 * (the applier acknowledges messages after it; capture moves the slot after its bookkeeping write).
 *
 * TCP keepalives: when the network between sitesync and the server dies silently, the server would keep
 * the old backend (holding the replication origin or the slot) for the kernel default of about two hours,
 * and the restarted session could not take them back. With these, the server notices within a minute.
 *
 * client_encoding=UTF8: pgoutput's walsender converts row values and relation, column and type names from
 * the database's encoding to the client's, so capture reads UTF-8 whatever the source database stores
 * (LATIN1, WIN1252, EUC_JP…), which the decoder requires: it refuses bytes that are not UTF-8. The
 * applier's writes are UTF-8 too, and the target's server converts them into its own encoding.
 * node-postgres already sends client_encoding=UTF8 as a startup parameter on every connection, replication
 * ones included (and that wins over a `-c` here); this line makes the settings say it themselves, for a
 * driver that sends none (libpq, unless told), where it also outranks a database's or role's own default
 * (ALTER DATABASE … SET client_encoding). A SQL_ASCII database has nothing to convert from: capture
 * refuses it at start (postgres-source.ts).
 */
export const SESSION_OPTIONS = [
  'synchronous_commit=on',
  'tcp_keepalives_idle=20',
  'tcp_keepalives_interval=10',
  'tcp_keepalives_count=3',
  'datestyle=ISO',
  'intervalstyle=iso_8601',
  'extra_float_digits=3',
  'timezone=UTC',
  'bytea_output=hex',
  'lc_monetary=C',
  'standard_conforming_strings=on',
  'client_encoding=UTF8',
]
  .map((setting) => `-c ${setting}`)
  .join(' ');

/**
 * What every sitesync connection to PostgreSQL is opened with: the session settings above, TCP keepalives
 * from the client's side too, and a bound on connecting, so that a server that accepts the connection but
 * never answers (a hung network, a server stuck starting) fails the session, which is then retried,
 * instead of waiting forever.
 */
export const CONNECTION_OPTIONS = {
  options: SESSION_OPTIONS,
  keepAlive: true,
  keepAliveInitialDelayMillis: 10_000,
  connectionTimeoutMillis: 30_000,
} as const;
