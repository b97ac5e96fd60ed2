-- 0007_catalog_notify: tell every bot process when someone's connections change.
--
-- Each process caches a person's tool catalog (built from their mcp_connections rows) until it
-- changes. Its own changes it knows; for another process's, every change to a person's
-- connections bumps their row in mcp_catalog_versions (one global sequence, so "what changed
-- since version N" is one indexed range) and sends pg_notify('mcp_catalog', {team_id,
-- user_id}) at commit. The payload names the person only: never a URL, config or secret.
--
-- The usage recorder's counter bumps (usage_count, last_used_at) change no catalog and fire
-- nothing: an UPDATE counts only when usage_count stays as it was (only that batch moves it).
-- SQLite (sql/sqlite/0007_catalog_notify.sql) keeps the same table without notifications;
-- its processes poll PRAGMA data_version and then read the versions (mcp_core/store/_changes.py).

CREATE SEQUENCE mcp_catalog_version_seq;

CREATE TABLE mcp_catalog_versions (
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id)
);

CREATE INDEX mcp_catalog_versions_version_idx ON mcp_catalog_versions (version);

ALTER TABLE mcp_catalog_versions ENABLE ROW LEVEL SECURITY;

CREATE FUNCTION mcp_catalog_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed mcp_connections%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    INSERT INTO mcp_catalog_versions (team_id, user_id, version)
    VALUES (changed.team_id, changed.user_id, nextval('mcp_catalog_version_seq'))
    ON CONFLICT (team_id, user_id) DO UPDATE SET version = EXCLUDED.version, changed_at = now();
    PERFORM pg_notify(
        'mcp_catalog',
        json_build_object('team_id', changed.team_id, 'user_id', changed.user_id)::text
    );
    RETURN NULL;
END
$$;

CREATE TRIGGER mcp_connections_catalog_insert_delete
    AFTER INSERT OR DELETE ON mcp_connections
    FOR EACH ROW EXECUTE FUNCTION mcp_catalog_changed();

CREATE TRIGGER mcp_connections_catalog_update
    AFTER UPDATE ON mcp_connections
    FOR EACH ROW WHEN (OLD.usage_count IS NOT DISTINCT FROM NEW.usage_count)
    EXECUTE FUNCTION mcp_catalog_changed();
