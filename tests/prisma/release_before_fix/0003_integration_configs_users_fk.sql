-- A foreign key from financial.integration_configs.user_id to the users table,
-- only when a users table exists at this point of the run and its key has a type
-- user_id can reference (PostgreSQL decides: uuid to uuid, integer to bigint...).
-- Otherwise the key is skipped and the reason logged (bootstrap logs these notices
-- as server_notice); this file never fails for want of a users table.
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
    EXCEPTION WHEN datatype_mismatch THEN
        RAISE WARNING '%.% is %, financial.integration_configs.user_id is %: no foreign key',
            users, pk_col, pk_type, own_type;
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
