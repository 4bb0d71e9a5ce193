-- Undo 0002: refuses while financial.integration_configs holds rows (export or
-- delete them first). Drops the table only if 0002 created it, and its functions
-- only when no other trigger uses them. Touches nothing outside schema financial.
DO $down$
DECLARE
    rel regclass := to_regclass('financial.integration_configs');
    fn  regprocedure := to_regprocedure('financial.update_updated_at_column()');
    global_fn regprocedure := to_regprocedure('financial.set_integration_configs_is_global()');
BEGIN
    IF rel IS NOT NULL THEN
        IF EXISTS (SELECT FROM financial.integration_configs) THEN
            RAISE EXCEPTION 'refusing to drop financial.integration_configs: it holds % rows',
                (SELECT count(*) FROM financial.integration_configs)
                USING HINT = 'export or delete the rows first, then roll back again',
                      ERRCODE = 'dependent_objects_still_exist';
        END IF;
        IF obj_description(rel, 'pg_class') = 'created by bootstrap migration 0002_integration_configs.sql' THEN
            DROP TABLE financial.integration_configs;
        ELSE
            DROP TRIGGER IF EXISTS update_integration_configs_updated_at ON financial.integration_configs;
            DROP TRIGGER IF EXISTS set_integration_configs_is_global ON financial.integration_configs;
            DROP INDEX IF EXISTS financial.idx_integration_configs_type,
                                 financial.idx_integration_configs_unique,
                                 financial.idx_integration_configs_global_unique;
            ALTER TABLE financial.integration_configs DROP CONSTRAINT IF EXISTS integration_configs_global_check;
            RAISE NOTICE 'financial.integration_configs existed before 0002 ran: the table is left in place, its trigger, indexes and check removed';
        END IF;
    END IF;
    IF fn IS NOT NULL THEN
        IF EXISTS (SELECT FROM pg_trigger WHERE tgfoid = fn) THEN
            RAISE NOTICE 'financial.update_updated_at_column() is still used by other triggers: left in place';
        ELSE
            DROP FUNCTION financial.update_updated_at_column();
        END IF;
    END IF;
    IF global_fn IS NOT NULL AND NOT EXISTS (SELECT FROM pg_trigger WHERE tgfoid = global_fn) THEN
        DROP FUNCTION financial.set_integration_configs_is_global();
    END IF;
END
$down$;
