# replicached: a memcached proxy that keeps R copies of every item.
#   build:  docker build -t replicached .
#   run:    docker run -v "$PWD/examples:/etc/replicached:ro" -p 11211:11211 -p 9150:9150 replicached
# No container engine on the development machine: scripts/check-dockerfile.sh runs
# each instruction below in a clean directory instead.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: dev dependencies + TypeScript -> dist/ --------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies + dist/ only -------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY examples/replicached.example.yaml /etc/replicached/replicached.yaml
# The image's unprivileged user (uid 1000); nothing below needs root.
USER node
# 11211: memcached clients (text and binary). 9150: /metrics, /healthz, /readyz.
EXPOSE 11211 9150
# Mount a directory holding replicached.yaml; editing the file (or SIGHUP) reloads it.
VOLUME ["/etc/replicached"]
# /healthz answers while the process serves (needs metricsListen on, port 9150).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9150/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["--config", "/etc/replicached/replicached.yaml"]
