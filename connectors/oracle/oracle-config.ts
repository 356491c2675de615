/**
 * What an Oracle site's configuration must say: an `oracle://` URL per role naming the service of the
 * database the tables are in (the PDB in a multitenant database); sitesync keeps its own tables in the
 * SITESYNC schema there. The database itself must be in ARCHIVELOG mode with supplemental logging and the
 * capture user must hold LogMiner's privileges (oracle-setup.ts says how). oracledb-connection.ts reads the
 * URL; this file is what the connector registry needs of it.
 */
export { checkOracleUrl, ORACLE_URL_EXAMPLE } from './oracledb-connection.ts';
