-- The SQL Server of the `sqlserver` compose profile, made ready for sitesync's tests (idempotent: run by the
-- one-shot sqlserver-init service at every `up`, and safe to run by hand again):
--   - database sitesync_test with change data capture enabled;
--   - sitesync.apply_progress (the columns the SQL Server sink writes first in every applied transaction)
--     captured as sitesync_apply_progress, so that capture recognises and drops relayed writes;
--   - login and user sitesync_test, db_owner of sitesync_test (CDC's procedures and tables need it).
-- The test login's password comes from the environment variable SITESYNC_TEST_PASSWORD (sqlcmd reads
-- environment variables as scripting variables), never from this file.
-- Run: SQLCMDPASSWORD=<sa password> /opt/mssql-tools18/bin/sqlcmd -C -S <host> -U sa -b -i init.sql

SET NOCOUNT ON;
GO
IF DB_ID(N'sitesync_test') IS NULL CREATE DATABASE [sitesync_test];
GO
USE [sitesync_test];
GO
IF (SELECT is_cdc_enabled FROM sys.databases WHERE database_id = DB_ID()) = 0 EXEC sys.sp_cdc_enable_db;
GO
IF SCHEMA_ID(N'sitesync') IS NULL EXEC(N'CREATE SCHEMA [sitesync]');
GO
IF OBJECT_ID(N'sitesync.apply_progress', N'U') IS NULL
CREATE TABLE [sitesync].[apply_progress] (
  [source] varchar(40) NOT NULL PRIMARY KEY,
  [source_kind] varchar(20) NOT NULL,
  [position] varchar(64) NOT NULL,
  [commit_time_micros] bigint NOT NULL,
  [applied_transactions] bigint NOT NULL DEFAULT 0
);
GO
IF NOT EXISTS (SELECT 1 FROM cdc.change_tables WHERE capture_instance = N'sitesync_apply_progress')
EXEC sys.sp_cdc_enable_table @source_schema = N'sitesync', @source_name = N'apply_progress', @role_name = NULL, @capture_instance = N'sitesync_apply_progress';
GO
IF SUSER_ID(N'sitesync_test') IS NULL
CREATE LOGIN [sitesync_test] WITH PASSWORD = N'$(SITESYNC_TEST_PASSWORD)', CHECK_POLICY = OFF, DEFAULT_DATABASE = [sitesync_test];
GO
IF USER_ID(N'sitesync_test') IS NULL CREATE USER [sitesync_test] FOR LOGIN [sitesync_test];
GO
ALTER ROLE db_owner ADD MEMBER [sitesync_test];
GO
-- The capture job scans the log every 5 s by default; every second keeps the live tests short. A job's new
-- settings take effect when it starts again.
EXEC sys.sp_cdc_change_job @job_type = N'capture', @pollinginterval = 1;
-- (stopping a job that is not running is an error: nothing to do then)
BEGIN TRY EXEC sys.sp_cdc_stop_job @job_type = N'capture'; END TRY BEGIN CATCH END CATCH;
EXEC sys.sp_cdc_start_job @job_type = N'capture';
GO
-- The capture and cleanup jobs exist once CDC is on (the Agent runs them): say so in the init log.
EXEC sys.sp_cdc_help_jobs;
GO
