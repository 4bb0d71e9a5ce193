-- update_updated_at_column() exists and update_integration_configs_updated_at
-- calls it BEFORE UPDATE, FOR EACH ROW, enabled; likewise the trigger that keeps
-- is_global in step with user_id (BEFORE INSERT OR UPDATE).
DO $verify$
DECLARE
    wanted   record;
    tg       record;
    fn       regprocedure;
    problems text[] := '{}';
BEGIN
    FOR wanted IN
        SELECT * FROM (VALUES
            -- tgtype bits: 1 FOR EACH ROW, 2 BEFORE, 4 INSERT, 16 UPDATE
            ('update_integration_configs_updated_at', 'financial.update_updated_at_column()', 1 | 2 | 16,
             'BEFORE UPDATE FOR EACH ROW'),
            ('set_integration_configs_is_global', 'financial.set_integration_configs_is_global()', 1 | 2 | 4 | 16,
             'BEFORE INSERT OR UPDATE FOR EACH ROW')
        ) AS w(name, function, bits, timing)
    LOOP
        fn := to_regprocedure(wanted.function);
        IF fn IS NULL THEN
            problems := problems || format('function %s is missing', wanted.function);
            CONTINUE;
        END IF;
        SELECT t.tgfoid, t.tgenabled, t.tgtype INTO tg
          FROM pg_trigger t
         WHERE t.tgrelid = to_regclass('financial.integration_configs')
           AND t.tgname = wanted.name AND NOT t.tgisinternal;
        IF NOT FOUND THEN
            problems := problems || format('trigger %s on financial.integration_configs is missing', wanted.name);
        ELSIF tg.tgfoid <> fn THEN
            problems := problems || format('trigger %s calls %s, expected %s', wanted.name, tg.tgfoid::regprocedure, fn);
        ELSIF tg.tgenabled = 'D' THEN
            problems := problems || format('trigger %s is disabled', wanted.name);
        ELSIF tg.tgtype & wanted.bits <> wanted.bits THEN
            problems := problems || format('trigger %s must be %s', wanted.name, wanted.timing);
        END IF;
    END LOOP;
    IF cardinality(problems) > 0 THEN
        RAISE EXCEPTION '%', array_to_string(problems, '; ');
    END IF;
END
$verify$;
