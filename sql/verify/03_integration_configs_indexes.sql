-- The three indexes exist under their exact names with the documented definitions.
DO $verify$
DECLARE
    wanted   record;
    actual   text;
    problems text[] := '{}';
BEGIN
    FOR wanted IN
        SELECT * FROM (VALUES
            ('idx_integration_configs_type',
             'CREATE INDEX idx_integration_configs_type ON financial.integration_configs USING btree (integration_type)'),
            ('idx_integration_configs_unique',
             'CREATE UNIQUE INDEX idx_integration_configs_unique ON financial.integration_configs USING btree (user_id, integration_type, config_key) WHERE (user_id IS NOT NULL)'),
            ('idx_integration_configs_global_unique',
             'CREATE UNIQUE INDEX idx_integration_configs_global_unique ON financial.integration_configs USING btree (integration_type, config_key) WHERE (user_id IS NULL)')
        ) AS w(name, definition)
    LOOP
        SELECT pg_get_indexdef(i.indexrelid) INTO actual
          FROM pg_index i
         WHERE i.indexrelid = to_regclass(format('financial.%I', wanted.name)) AND i.indisvalid;
        IF actual IS NULL THEN
            problems := problems || format('index %s is missing (or invalid)', wanted.name);
        ELSIF actual <> wanted.definition THEN
            problems := problems || format('index %s is "%s", expected "%s"', wanted.name, actual, wanted.definition);
        END IF;
    END LOOP;
    IF cardinality(problems) > 0 THEN
        RAISE EXCEPTION '%', array_to_string(problems, '; ');
    END IF;
END
$verify$;
