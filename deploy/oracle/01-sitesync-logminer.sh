#!/bin/bash
# Run once by the gvenzl/oracle-free image when it creates its database (mounted into
# /container-entrypoint-initdb.d by docker-compose's `oracle` profile), as the `oracle` OS user with
# ORACLE_SID set, so `sqlplus / as sysdba` is SYS in the root (CDB$ROOT). It makes the database ready for
# sitesync's LogMiner capture (connectors/oracle/oracle-setup.ts says why each step):
#   1. ARCHIVELOG mode: needs the instance mounted, not open, hence the restart here (archived logs go to a
#      recovery area under the data directory);
#   2. minimal supplemental logging (ALL COLUMNS logging is set per table by the tests, as an operator would);
#   3. the common capture user C##SITESYNC with LogMiner's grants, CONTAINER=ALL, and in FREEPDB1 the rights to
#      apply (any table), to keep its bookkeeping in the SITESYNC schema, and to create and drop users (the
#      live tests make a schema per fixture);
#   4. in FREEPDB1: SITESYNC (sitesync's bookkeeping schema) and SITESYNC_APP (where the live tests make their
#      tables), both without a login of their own use.
# Password: SITESYNC_TEST_PASSWORD (the compose file passes SITESYNC_ORACLE_TEST_PASSWORD, a development
# default). At the end it writes /opt/oracle/oradata/.sitesync-ready, which the healthcheck waits for.
set -euo pipefail
: "${SITESYNC_TEST_PASSWORD:?SITESYNC_TEST_PASSWORD must be set}"
pw=${SITESYNC_TEST_PASSWORD//\"/}

mkdir -p /opt/oracle/oradata/recovery_area

sqlplus -s / as sysdba <<SQL
WHENEVER SQLERROR EXIT SQL.SQLCODE
ALTER SYSTEM SET db_recovery_file_dest_size = 10G;
ALTER SYSTEM SET db_recovery_file_dest = '/opt/oracle/oradata/recovery_area' SCOPE = SPFILE;
SHUTDOWN IMMEDIATE
STARTUP MOUNT
ALTER DATABASE ARCHIVELOG;
ALTER DATABASE OPEN;
WHENEVER SQLERROR CONTINUE
ALTER PLUGGABLE DATABASE ALL OPEN;
WHENEVER SQLERROR EXIT SQL.SQLCODE
ALTER DATABASE ADD SUPPLEMENTAL LOG DATA;

CREATE USER C##SITESYNC IDENTIFIED BY "${pw}" CONTAINER=ALL;
GRANT CREATE SESSION TO C##SITESYNC CONTAINER=ALL;
GRANT SET CONTAINER TO C##SITESYNC CONTAINER=ALL;
GRANT LOGMINING TO C##SITESYNC CONTAINER=ALL;
GRANT SELECT ANY TRANSACTION TO C##SITESYNC CONTAINER=ALL;
GRANT SELECT_CATALOG_ROLE TO C##SITESYNC CONTAINER=ALL;
GRANT EXECUTE_CATALOG_ROLE TO C##SITESYNC CONTAINER=ALL;
GRANT SELECT ON SYS.V_\$DATABASE TO C##SITESYNC CONTAINER=ALL;
GRANT SELECT ON SYS.V_\$THREAD TO C##SITESYNC CONTAINER=ALL;
GRANT SELECT ON SYS.V_\$LOG TO C##SITESYNC CONTAINER=ALL;
GRANT SELECT ON SYS.V_\$LOGFILE TO C##SITESYNC CONTAINER=ALL;
GRANT SELECT ON SYS.V_\$ARCHIVED_LOG TO C##SITESYNC CONTAINER=ALL;
GRANT SELECT ON SYS.V_\$LOGMNR_LOGS TO C##SITESYNC CONTAINER=ALL;
GRANT SELECT ON SYS.V_\$LOGMNR_CONTENTS TO C##SITESYNC CONTAINER=ALL;
GRANT SELECT ON SYS.V_\$TRANSACTION TO C##SITESYNC CONTAINER=ALL;
GRANT EXECUTE ON SYS.DBMS_LOGMNR TO C##SITESYNC CONTAINER=ALL;
ALTER USER C##SITESYNC SET CONTAINER_DATA = ALL CONTAINER = CURRENT;

ALTER SESSION SET CONTAINER = FREEPDB1;
CREATE USER SITESYNC IDENTIFIED BY "${pw}" DEFAULT TABLESPACE USERS QUOTA UNLIMITED ON USERS;
CREATE USER SITESYNC_APP IDENTIFIED BY "${pw}" DEFAULT TABLESPACE USERS QUOTA UNLIMITED ON USERS;
GRANT CREATE SESSION, CREATE TABLE TO SITESYNC_APP;
GRANT CREATE ANY TABLE, ALTER ANY TABLE, DROP ANY TABLE, SELECT ANY TABLE, INSERT ANY TABLE, UPDATE ANY TABLE,
  DELETE ANY TABLE, LOCK ANY TABLE, CREATE ANY INDEX, SELECT ANY DICTIONARY, CREATE USER, DROP USER TO C##SITESYNC;
EXIT
SQL

touch /opt/oracle/oradata/.sitesync-ready
echo "sitesync: ARCHIVELOG on, supplemental logging on, C##SITESYNC, SITESYNC and SITESYNC_APP ready"
