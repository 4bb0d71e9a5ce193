-- The rule of 0003 for databases where an earlier release added the key: a foreign key
-- from financial.integration_configs.user_id to a users table the gateway's migrations
-- did not create (another service's, which must stay free to rebuild it) is dropped.
-- A key to the gateway's own users table stays. The rows are not touched.
DO $fk$
DECLARE
    target regclass;
BEGIN
    SELECT c.confrelid INTO target
      FROM pg_constraint c
     WHERE c.conrelid = to_regclass('financial.integration_configs')
       AND c.conname = 'integration_configs_user_id_fkey' AND c.contype = 'f';
    IF target IS NULL THEN
        RETURN;
    END IF;
    IF coalesce(obj_description(target, 'pg_class'), '') LIKE 'created by bootstrap migration %' THEN
        RETURN;
    END IF;
    ALTER TABLE financial.integration_configs DROP CONSTRAINT integration_configs_user_id_fkey;
    RAISE NOTICE 'dropped the foreign key from financial.integration_configs.user_id to %, which belongs to another service', target;
END
$fk$;
