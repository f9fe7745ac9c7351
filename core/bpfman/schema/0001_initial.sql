-- Programs this daemon loaded. program_id is the kernel's id; the pin at
-- pin_path keeps the program alive while the daemon is down.
CREATE TABLE programs (
    program_id     INTEGER PRIMARY KEY,
    name           TEXT NOT NULL,
    type           TEXT NOT NULL,
    path           TEXT NOT NULL,
    pin_path       TEXT NOT NULL,
    map_owner_id   INTEGER NOT NULL,
    map_pin_dir    TEXT NOT NULL,
    global_data    TEXT NOT NULL DEFAULT '{}',   -- JSON: name -> hex
    metadata       TEXT NOT NULL DEFAULT '{}',   -- JSON: key -> value
    loaded_by_uid  INTEGER,
    created_at     TEXT NOT NULL
) STRICT;

-- One attachment of a program. link_id is ours and never reused
-- (AUTOINCREMENT), so pins named after it cannot collide with old ones.
CREATE TABLE links (
    link_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    program_id     INTEGER NOT NULL REFERENCES programs(program_id),
    type           TEXT NOT NULL,
    params         TEXT NOT NULL,                 -- JSON of the type's params
    attach_point   TEXT NOT NULL,
    seq            INTEGER NOT NULL,              -- attach order, for stable ties
    pin_path       TEXT NOT NULL,
    kernel_link_id INTEGER,
    details        TEXT NOT NULL DEFAULT '{}',
    metadata       TEXT NOT NULL DEFAULT '{}',
    owner_uid      INTEGER,
    created_at     TEXT NOT NULL
) STRICT;
CREATE INDEX links_by_program ON links(program_id);
CREATE INDEX links_by_attach_point ON links(attach_point);

-- Multi-prog dispatchers, one per attach point.
CREATE TABLE dispatchers (
    attach_point   TEXT PRIMARY KEY,
    type           TEXT NOT NULL,
    mode           TEXT NOT NULL,
    program_id     INTEGER,
    revision       INTEGER NOT NULL,
    pin_dir        TEXT
) STRICT;

CREATE TABLE counters (
    name           TEXT PRIMARY KEY,
    value          INTEGER NOT NULL
) STRICT;
INSERT INTO counters VALUES ('link_seq', 0);
