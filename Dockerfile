# botwarden in a container. Build: docker build -t botwarden .
# Run:   docker run -d --name botwarden -p 127.0.0.1:7070:7070 -v botwarden-data:/data \
#          -e BOTWARDEN_TOKEN=change-me -v "$PWD/.env:/app/.env:ro" botwarden
# Mount the .env file (readable by uid 1000) rather than `docker run --env-file`: variables of the
# container's environment reach every bot, those of the file only the accounts that name them.
# tini is PID 1: bots are detached from the daemon, so when the daemon restarts inside
# the container they are re-parented to PID 1, which must reap them (see docs/operations.md).

FROM node:22-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts/build.mjs ./scripts/
COPY src ./src
COPY migrations ./migrations
# npm ci compiles better-sqlite3 from source against this image's Node and runs `prepare` (esbuild: scripts/build.mjs).
# (npm install is the fallback for the lock's missing optional rollup entries: see .ci/run.)
RUN (npm ci --no-audit --no-fund || npm install --no-audit --no-fund) \
 && npm prune --omit=dev

FROM node:22-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown node:node /data
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# Every runtime folder of package.json "files" (test/install.test.ts checks this list against it).
COPY migrations ./migrations
COPY config ./config
COPY bots ./bots
COPY dashboard ./dashboard
ENV NODE_ENV=production \
    BOTWARDEN_DATA_DIR=/data \
    BOTWARDEN_CONFIG=/app/config/botwarden.yaml \
    BOTWARDEN_LISTEN=0.0.0.0:7070
VOLUME ["/data"]
EXPOSE 7070
USER node
HEALTHCHECK --interval=30s --timeout=5s CMD node -e "fetch('http://127.0.0.1:7070/health').then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))"
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/cli.js"]
CMD ["daemon"]
