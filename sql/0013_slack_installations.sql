-- 0013_slack_installations: one deployment for many workspaces (Slack's OAuth v2 install flow).
--
-- mcp_slack_installations: one row per (app, org, workspace, installer); the newest row of a
-- workspace is the one its events and actions are answered with. Tokens (bot, refresh) are
-- never here: `credential_ref` names them in the credential manager, encrypted like every
-- other secret. An org-wide Enterprise Grid install has team_id '' and is_enterprise_install.
-- '' (not NULL) stands for "none" so the primary key covers every case.
-- mcp_slack_oauth_states: the state parameter of installs in progress, used once.
-- mcp_slack_workspaces: which Enterprise Grid org a workspace belongs to, as seen on its
-- requests, so work that starts outside a request (a takeover after a restart) finds an
-- org-wide install's token from the team alone.
-- mcp_workspace_removals: workspaces that uninstalled the app (or revoked its token): their
-- people's connections and secrets are deleted once purge_after has passed
-- (SLACK_UNINSTALL_GRACE_DAYS); a reinstall before then removes the row and keeps them.

CREATE TABLE mcp_slack_installations (
    client_id text NOT NULL,
    enterprise_id text NOT NULL,
    team_id text NOT NULL,
    user_id text NOT NULL,
    is_enterprise_install boolean NOT NULL,
    data jsonb NOT NULL,
    credential_ref text NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, enterprise_id, team_id, user_id)
);

CREATE INDEX mcp_slack_installations_newest_idx
    ON mcp_slack_installations (client_id, enterprise_id, team_id, installed_at);

CREATE TABLE mcp_slack_oauth_states (
    state text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE TABLE mcp_slack_workspaces (
    team_id text PRIMARY KEY,
    enterprise_id text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mcp_workspace_removals (
    enterprise_id text NOT NULL,
    team_id text NOT NULL,
    reason text NOT NULL,
    removed_at timestamptz NOT NULL DEFAULT now(),
    purge_after timestamptz NOT NULL,
    PRIMARY KEY (enterprise_id, team_id)
);

ALTER TABLE mcp_slack_installations ENABLE ROW LEVEL SECURITY;
ALTER TABLE mcp_slack_oauth_states ENABLE ROW LEVEL SECURITY;
ALTER TABLE mcp_slack_workspaces ENABLE ROW LEVEL SECURITY;
ALTER TABLE mcp_workspace_removals ENABLE ROW LEVEL SECURITY;
