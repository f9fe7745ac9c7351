-- Shared attach points whose chain is being changed. A row is committed
-- before the kernel is touched and deleted by the same transaction that
-- commits the change, so a row left after a crash names a chain that may not
-- match the records: the daemon rebuilds it from the records on start.
CREATE TABLE dirty_attach_points (
    attach_point   TEXT PRIMARY KEY,
    type           TEXT NOT NULL
) STRICT;
