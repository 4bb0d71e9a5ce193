-- Behaviour, with test rows that vanish (verify always rolls back): defaults,
-- the updated_at trigger, duplicate global and user rows refused, a user row and a
-- global row with the same type and key side by side, global rows and the CHECK.
-- Rows are found by (type, key, user), never by id: older tables keep their own key.
DO $guard$
BEGIN
    -- Said plainly, rather than as the parse error the declarations below would give.
    IF to_regclass('financial.integration_configs') IS NULL THEN
        RAISE EXCEPTION 'table financial.integration_configs is missing: no behaviour to check';
    END IF;
END
$guard$;
SET CONSTRAINTS ALL DEFERRED;  -- the users foreign key, if any: no real user is needed

DO $verify$
DECLARE
    kind    CONSTANT text := 'bootstrap_verify_' || md5(clock_timestamp()::text);
    someone financial.integration_configs.user_id%TYPE;
    r       record;
BEGIN
    -- A user id of the column's type (uuid in new databases; older ones may keep another).
    someone := CASE WHEN pg_typeof(someone)::text IN ('integer', 'bigint', 'smallint') THEN '-424242'
                    WHEN pg_typeof(someone)::text = 'uuid' THEN '00000000-0000-4000-8000-00000000b007'
                    ELSE 'bootstrap-verify-user' END;

    -- A global row written without naming is_global; defaults filled in.
    INSERT INTO financial.integration_configs (user_id, integration_type, config_key, config_value)
    VALUES (NULL, kind, 'api_url', 'https://example.test');
    SELECT * INTO r FROM financial.integration_configs
     WHERE integration_type = kind AND config_key = 'api_url' AND user_id IS NULL;
    IF r.is_global IS DISTINCT FROM true THEN
        RAISE EXCEPTION 'a row without user_id was stored with is_global = %, expected true', r.is_global;
    END IF;
    IF r.is_encrypted IS DISTINCT FROM false OR r.metadata IS DISTINCT FROM '{}'::jsonb
       OR r.created_at IS NULL OR r.updated_at IS NULL THEN
        RAISE EXCEPTION 'defaults are wrong: is_encrypted=%, metadata=%, created_at=%, updated_at=%',
            r.is_encrypted, r.metadata, r.created_at, r.updated_at;
    END IF;

    -- The trigger bumps updated_at on UPDATE (even when the UPDATE sets it), and leaves created_at.
    UPDATE financial.integration_configs
       SET created_at = '2000-01-01 00:00:00+00', updated_at = '2000-01-01 00:00:00+00'
     WHERE integration_type = kind AND config_key = 'api_url' AND user_id IS NULL;
    UPDATE financial.integration_configs SET config_value = 'https://example.test/v2'
     WHERE integration_type = kind AND config_key = 'api_url' AND user_id IS NULL;
    SELECT * INTO r FROM financial.integration_configs
     WHERE integration_type = kind AND config_key = 'api_url' AND user_id IS NULL;
    IF r.updated_at <= '2000-01-01 00:00:00+00' THEN
        RAISE EXCEPTION 'trigger update_integration_configs_updated_at did not bump updated_at on UPDATE';
    END IF;
    IF r.created_at <> '2000-01-01 00:00:00+00' THEN
        RAISE EXCEPTION 'an UPDATE changed created_at';
    END IF;

    -- A duplicate global row is refused.
    BEGIN
        INSERT INTO financial.integration_configs (user_id, integration_type, config_key, is_global)
        VALUES (NULL, kind, 'api_url', true);
        RAISE EXCEPTION 'a duplicate global row (integration_type, config_key) was accepted: idx_integration_configs_global_unique does not enforce it';
    EXCEPTION WHEN unique_violation THEN
        NULL;
    END;

    -- A user row with the same type and key as the global row coexists with it.
    INSERT INTO financial.integration_configs (user_id, integration_type, config_key, config_value, is_global)
    VALUES (someone, kind, 'api_url', 'https://user.example.test', false);

    -- A duplicate user row is refused.
    BEGIN
        INSERT INTO financial.integration_configs (user_id, integration_type, config_key, is_global)
        VALUES (someone, kind, 'api_url', false);
        RAISE EXCEPTION 'a duplicate user row (user_id, integration_type, config_key) was accepted: idx_integration_configs_unique does not enforce it';
    EXCEPTION WHEN unique_violation THEN
        NULL;
    END;

    -- A user row claiming to be global contradicts the definition and is refused.
    BEGIN
        INSERT INTO financial.integration_configs (user_id, integration_type, config_key, is_global)
        VALUES (someone, kind, 'other_key', true);
        RAISE EXCEPTION 'a row with a user_id and is_global = true was accepted: integration_configs_global_check is missing';
    EXCEPTION WHEN check_violation THEN
        NULL;
    END;

    IF (SELECT count(*) FROM financial.integration_configs WHERE integration_type = kind) <> 2 THEN
        RAISE EXCEPTION 'expected the global row and the user row side by side';
    END IF;
END
$verify$;
