-- bootstrap:valid-checksum d922cce562edfb264089b89298402bc08e7729db57b62fbaf26c8eb725475e24
-- (the text before 0.2, which keyed to whatever users table existed; databases that ran it are current:
-- 0004 removes a key it added to a table the gateway does not own.)
--
-- A foreign key from financial.integration_configs.user_id to the users table, only
-- when the gateway's own migrations created that table. They mark every table they
-- create with a comment ('created by bootstrap migration <file>', as 0001 and 0002
-- do); a users table without that mark belongs to another service (a Prisma users
-- service, say), which must stay free to rebuild it, so it gets no key whoever
-- started first: dev, CI and production end with the same schema. How user_id stays
-- meaningful without the key: sql/README.md.
-- When the key is added, its type must fit (PostgreSQL decides: uuid to uuid,
-- integer to bigint...), and the migrator must be allowed to reference the table;
-- otherwise the key is skipped and the reason logged (bootstrap logs these notices
-- as server_notice). This file never fails for want of a users table.
-- The key is DEFERRABLE (checked at once unless a transaction defers it: the
-- verify scripts insert test rows without a real user, then roll back) and is
-- added NOT VALID first, so rows pointing at deleted users never block a deploy.
DO $fk$
DECLARE
    users    regclass := to_regclass('users');
    pk_col   name;
    pk_type  text;
    own_type text;
    orphans  bigint;
BEGIN
    IF users IS NULL THEN
        RAISE NOTICE 'no users table: financial.integration_configs.user_id gets no foreign key';
        RETURN;
    END IF;
    IF coalesce(obj_description(users, 'pg_class'), '') NOT LIKE 'created by bootstrap migration %' THEN
        RAISE NOTICE '% belongs to another service (the gateway''s migrations did not create it): financial.integration_configs.user_id gets no foreign key', users;
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM pg_constraint
                WHERE conrelid = 'financial.integration_configs'::regclass
                  AND conname = 'integration_configs_user_id_fkey') THEN
        RETURN;
    END IF;
    SELECT a.attname, format_type(a.atttypid, a.atttypmod) INTO pk_col, pk_type
      FROM pg_constraint c
      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
     WHERE c.conrelid = users AND c.contype = 'p' AND cardinality(c.conkey) = 1;
    IF pk_col IS NULL THEN
        RAISE WARNING '% has no single-column primary key: financial.integration_configs.user_id gets no foreign key', users;
        RETURN;
    END IF;
    SELECT format_type(atttypid, atttypmod) INTO own_type
      FROM pg_attribute WHERE attrelid = 'financial.integration_configs'::regclass AND attname = 'user_id';
    BEGIN
        EXECUTE format(
            'ALTER TABLE financial.integration_configs ADD CONSTRAINT integration_configs_user_id_fkey'
            ' FOREIGN KEY (user_id) REFERENCES %s (%I) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE NOT VALID',
            users, pk_col);
    EXCEPTION
        WHEN datatype_mismatch THEN
            RAISE WARNING '%.% is %, financial.integration_configs.user_id is %: no foreign key',
                users, pk_col, pk_type, own_type;
            RETURN;
        WHEN insufficient_privilege THEN
            RAISE WARNING '% may not reference %: financial.integration_configs.user_id gets no foreign key', current_user, users;
            RETURN;
    END;
    EXECUTE format('SELECT count(*) FROM financial.integration_configs c WHERE c.user_id IS NOT NULL'
                   ' AND NOT EXISTS (SELECT FROM %s u WHERE u.%I = c.user_id)', users, pk_col) INTO orphans;
    IF orphans = 0 THEN
        ALTER TABLE financial.integration_configs VALIDATE CONSTRAINT integration_configs_user_id_fkey;
        RAISE NOTICE 'financial.integration_configs.user_id references %.%', users, pk_col;
    ELSE
        RAISE WARNING '% rows of financial.integration_configs reference missing users: the key checks new rows only (NOT VALID)', orphans;
    END IF;
END
$fk$;
