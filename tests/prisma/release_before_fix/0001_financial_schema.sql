-- The financial schema, before any table in it.
-- Marked with a comment when this file creates it, so the rollback removes only
-- a schema it created (and only while it is empty).
DO $up$
BEGIN
    IF to_regnamespace('financial') IS NULL THEN
        CREATE SCHEMA financial;
        COMMENT ON SCHEMA financial IS 'created by bootstrap migration 0001_financial_schema.sql';
    END IF;
END
$up$;
