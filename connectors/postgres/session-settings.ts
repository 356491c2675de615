/**
 * Values travel between sites as PostgreSQL's own text forms, which is lossless only when both ends read
 * and write them with the same settings. Every connection sitesync opens (the replication connection whose
 * walsender formats the values, and the applying connection that parses them) uses these.
 */
export const SESSION_OPTIONS = [
  'datestyle=ISO',
  'intervalstyle=postgres',
  'extra_float_digits=3',
  'timezone=UTC',
  'bytea_output=hex',
  'lc_monetary=C',
  'standard_conforming_strings=on',
]
  .map((setting) => `-c ${setting}`)
  .join(' ');
