-- Undo 0003: drop the foreign key it may have added (nothing else).
ALTER TABLE IF EXISTS financial.integration_configs DROP CONSTRAINT IF EXISTS integration_configs_user_id_fkey;
