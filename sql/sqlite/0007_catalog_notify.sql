-- 0007_catalog_notify (SQLite twin of sql/0007_catalog_notify.sql; keep the two in step, see
-- tests/store/test_schema_parity.py).
--
-- SQLite has no notifications: each process polls PRAGMA data_version on a connection of its
-- own (it changes when any other connection committed) and only then reads the versions newer
-- than the last it saw. Writers are serialised, so max(version) + 1 is the global sequence.
-- As on PostgreSQL, the usage recorder's counter bumps (the only UPDATE that moves
-- usage_count) change no version.

CREATE TABLE mcp_catalog_versions (
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    changed_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (team_id, user_id)
);

CREATE INDEX mcp_catalog_versions_version_idx ON mcp_catalog_versions (version);

CREATE TRIGGER mcp_connections_catalog_insert AFTER INSERT ON mcp_connections
BEGIN
    INSERT INTO mcp_catalog_versions (team_id, user_id, version)
    VALUES (NEW.team_id, NEW.user_id, (SELECT coalesce(max(version), 0) + 1 FROM mcp_catalog_versions))
    ON CONFLICT (team_id, user_id) DO UPDATE
        SET version = excluded.version, changed_at = excluded.changed_at;
END;

CREATE TRIGGER mcp_connections_catalog_update AFTER UPDATE ON mcp_connections
WHEN OLD.usage_count IS NEW.usage_count
BEGIN
    INSERT INTO mcp_catalog_versions (team_id, user_id, version)
    VALUES (NEW.team_id, NEW.user_id, (SELECT coalesce(max(version), 0) + 1 FROM mcp_catalog_versions))
    ON CONFLICT (team_id, user_id) DO UPDATE
        SET version = excluded.version, changed_at = excluded.changed_at;
END;

CREATE TRIGGER mcp_connections_catalog_delete AFTER DELETE ON mcp_connections
BEGIN
    INSERT INTO mcp_catalog_versions (team_id, user_id, version)
    VALUES (OLD.team_id, OLD.user_id, (SELECT coalesce(max(version), 0) + 1 FROM mcp_catalog_versions))
    ON CONFLICT (team_id, user_id) DO UPDATE
        SET version = excluded.version, changed_at = excluded.changed_at;
END;
