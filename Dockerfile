# sitesync: one process per site.
#   docker build -t sitesync .
#   docker run --rm -v /etc/sitesync:/etc/sitesync:ro sitesync run --config /etc/sitesync/sitesync.yml --site paris
FROM node:20-bookworm-slim

WORKDIR /app

# Dependencies first, so that the layer is rebuilt only when the manifests change. All of them
# (--include=dev keeps that true even if NODE_ENV=production is set at build time). The optional native
# package sockopt (capture's receive buffer) is compiled here, with a toolchain removed in the same layer.
COPY package*.json ./
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && npm ci --include=dev --no-audit --no-fund \
 && npm cache clean --force \
 && apt-get purge -y python3 make g++ && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

COPY . .
# The launcher bundles the TypeScript sources into dist/ on first start; do it now, while /app is
# writable, so that every container starts from the bundle.
RUN node bin/sitesync.js --help >/dev/null

# The application files stay owned by root (read-only for the service); it runs as the image's
# unprivileged `node` user.
ENV NODE_ENV=production
USER node

# Prometheus metrics (--metrics-port / metrics.port).
EXPOSE 9464

ENTRYPOINT ["node", "bin/sitesync.js"]
CMD ["--help"]
