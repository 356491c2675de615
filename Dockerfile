# sitesync: one process per site.
#   docker build -t sitesync .
#   docker run --rm -v /etc/sitesync:/etc/sitesync:ro sitesync run --config /etc/sitesync/sitesync.yml --site paris
FROM node:20-bookworm-slim

WORKDIR /app

# Dependencies first, so that the layer is rebuilt only when the manifests change. All of them
# (--include=dev keeps that true even if NODE_ENV=production is set at build time).
COPY package*.json ./
RUN npm ci --include=dev --no-audit --no-fund \
 && npm cache clean --force

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
