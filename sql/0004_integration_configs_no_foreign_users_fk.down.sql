-- Undo 0004: it created nothing (it only dropped a key to another service's table, which
-- is not added back: that key is what locked the other service out), so nothing is dropped.
DO $down$
BEGIN
    RAISE NOTICE '0004 created nothing: nothing to undo';
END
$down$;
