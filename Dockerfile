# replicached: a memcached proxy that keeps R copies of every item.
#   build:  docker build -t replicached:0.1.0 .
#   run:    docker run -v "$PWD/examples:/etc/replicached:ro" -p 127.0.0.1:11211:11211 -p 127.0.0.1:9150:9150 replicached:0.1.0
# The run line mounts examples/ (its replicached.yaml: list your memcached under backends first),
# and publishes the client and metrics ports on the host's loopback.
# No container engine on the development machine: scripts/check-dockerfile.sh runs
# each instruction below in a clean directory instead, and the run line as written.

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
COPY examples/replicached.yaml /etc/replicached/replicached.yaml
# The image's unprivileged user (uid 1000); nothing below needs root.
USER node
# 11211: memcached clients (text and binary). 9150: /metrics, /healthz, /readyz.
EXPOSE 11211 9150
# Mount a directory holding replicached.yaml; editing the file (or SIGHUP) reloads it.
VOLUME ["/etc/replicached"]
# /healthz answers while the process serves. healthcheck.js reads the metrics address from the
# same config file as CMD (metricsListen must be on); flags given to `docker run` after the image
# name do not reach it: put settings in the file, or repeat them in --health-cmd.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "dist/healthcheck.js", "--config", "/etc/replicached/replicached.yaml"]
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["--config", "/etc/replicached/replicached.yaml"]
