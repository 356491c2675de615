/**
 * What a SQL Server site's configuration must say: a `sqlserver://` (or `mssql://`) URL per role, naming the
 * database (CDC is enabled per database; sitesync keeps its own tables in that database's `sitesync` schema).
 * The server itself must have CDC enabled on the database and its Agent running (sqlserver-setup.ts says how).
 * mssql-connection.ts reads the URL; this file is what the connector registry needs of it.
 */
export { checkSqlServerUrl, SQLSERVER_URL_EXAMPLE } from './mssql-connection.ts';
