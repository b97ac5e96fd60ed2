# One image for both Procfile processes: `web` (HTTP mode, the default command) and `worker`
# (Socket Mode: `slack-mcp-bot run`). See README, Deployment.
FROM node:20-bookworm-slim AS node

FROM python:3.11-slim-bookworm

# Node 20 (Debian's is 18) runs the stdio run cards' servers (npx @modelcontextprotocol/server-…);
# bubblewrap confines them where the container allows user namespaces (else
# MCP_STDIO_SANDBOX=auto uses resource limits only).
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# The hash-checked set CI tests (requirements.lock), then the bot itself without dependencies:
# the same two steps as .ci/run, so the image runs exactly what passed.
COPY requirements.lock /src/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --require-hashes -r /src/requirements.lock
COPY pyproject.toml README.md LICENSE manifest.yml /src/
COPY bot /src/bot
COPY mcp_core /src/mcp_core
COPY run_cards /src/run_cards
COPY sql /src/sql
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps /src && rm -rf /src

RUN useradd --create-home --uid 10001 bot && mkdir -p /app /data && chown bot /app /data
USER bot
# /app is the working directory: a `.env` mounted there is read as in a checkout.
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH DATA_DIR=/data PORT=3000 PYTHONUNBUFFERED=1
VOLUME /data
EXPOSE 3000
# exec: the bot itself gets SIGTERM, so it drains (TURN_DRAIN_S) before it exits.
CMD ["sh", "-c", "exec slack-mcp-bot run --http --port \"$PORT\""]
