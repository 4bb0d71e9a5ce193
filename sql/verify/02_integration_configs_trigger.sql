-- update_updated_at_column() exists and update_integration_configs_updated_at
-- calls it BEFORE UPDATE, FOR EACH ROW, enabled.
DO $verify$
DECLARE
    fn regprocedure := to_regprocedure('financial.update_updated_at_column()');
    tg record;
BEGIN
    IF fn IS NULL THEN
        RAISE EXCEPTION 'function financial.update_updated_at_column() is missing';
    END IF;
    SELECT t.tgfoid, t.tgenabled, t.tgtype INTO tg
      FROM pg_trigger t
     WHERE t.tgrelid = to_regclass('financial.integration_configs')
       AND t.tgname = 'update_integration_configs_updated_at' AND NOT t.tgisinternal;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'trigger update_integration_configs_updated_at on financial.integration_configs is missing';
    END IF;
    IF tg.tgfoid <> fn THEN
        RAISE EXCEPTION 'trigger update_integration_configs_updated_at calls %, expected %', tg.tgfoid::regprocedure, fn;
    END IF;
    IF tg.tgenabled = 'D' THEN
        RAISE EXCEPTION 'trigger update_integration_configs_updated_at is disabled';
    END IF;
    -- tgtype bits: 1 = FOR EACH ROW, 2 = BEFORE, 16 = UPDATE
    IF tg.tgtype & 1 = 0 OR tg.tgtype & 2 = 0 OR tg.tgtype & 16 = 0 THEN
        RAISE EXCEPTION 'trigger update_integration_configs_updated_at must be BEFORE UPDATE FOR EACH ROW';
    END IF;
END
$verify$;
