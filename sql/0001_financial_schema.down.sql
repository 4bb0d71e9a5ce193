-- Drop the financial schema only if 0001 created it and it is empty; otherwise leave it.
DO $down$
BEGIN
    IF to_regnamespace('financial') IS NULL THEN
        RETURN;
    END IF;
    IF obj_description(to_regnamespace('financial'), 'pg_namespace')
           IS DISTINCT FROM 'created by bootstrap migration 0001_financial_schema.sql' THEN
        RAISE NOTICE 'schema financial existed before 0001 ran: left in place';
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM pg_class WHERE relnamespace = to_regnamespace('financial'))
       OR EXISTS (SELECT FROM pg_proc WHERE pronamespace = to_regnamespace('financial'))
       OR EXISTS (SELECT FROM pg_type WHERE typnamespace = to_regnamespace('financial')) THEN
        RAISE NOTICE 'schema financial still holds objects: left in place';
        RETURN;
    END IF;
    DROP SCHEMA financial;
END
$down$;
