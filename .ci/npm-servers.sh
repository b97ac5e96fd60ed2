#!/usr/bin/env bash
# Install the npm reference MCP servers used by the test suite into .cache/npm (or $MCP_NPM_DIR).
# Idempotent: a marker file records the exact package list, so a warm cache costs no registry call.
# Launch them with `node <dir>/node_modules/@modelcontextprotocol/<name>/dist/index.js`, never `npx`
# (npx resolution depends on the working directory and may hit the registry).
set -euo pipefail

cd "$(dirname "$0")/.."
NPM_DIR="${MCP_NPM_DIR:-.cache/npm}"

# Exact pins; bump them together with tests/support/servers.py expectations.
PACKAGES=(
    @modelcontextprotocol/server-everything@2026.8.31
    @modelcontextprotocol/server-memory@2026.8.31
    @modelcontextprotocol/server-postgres@0.6.2      # deprecated upstream; speaks protocol 2024-11-05
    @modelcontextprotocol/server-filesystem@2026.8.31
    @modelcontextprotocol/server-slack@2025.4.25     # latest published; archived upstream
)

marker="$NPM_DIR/.installed"
wanted="${PACKAGES[*]}"
if [[ -f "$marker" && "$(cat "$marker")" == "$wanted" ]]; then
    echo "npm servers already installed in $NPM_DIR"
    exit 0
fi

mkdir -p "$NPM_DIR"
npm install --no-save --no-audit --no-fund --no-package-lock --prefix "$NPM_DIR" "${PACKAGES[@]}" </dev/null
for pkg in "${PACKAGES[@]}"; do
    name="${pkg%@*}"
    test -f "$NPM_DIR/node_modules/$name/dist/index.js" || { echo "missing $name/dist/index.js" >&2; exit 1; }
done
printf '%s' "$wanted" > "$marker"
echo "npm servers installed in $NPM_DIR"
