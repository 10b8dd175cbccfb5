# burrow-relay image. Build: docker build -t burrow-relay .
# Run:   docker run -p 8080:8080 -e BURROW_DOMAIN=tunnel.example.com \
#          -e BURROW_PUBLIC_URL=https://tunnel.example.com burrow-relay
# Every relay option is a BURROW_* variable or a flag after the image name (docs/OPERATIONS.md).
# Docker is not available on the development machine, so this file is not built there; its steps
# (npm ci, npm run build, npm prune --omit=dev, then the copies below) were run by hand.

# --- build: all dependencies, compile every workspace -------------------------------------------
FROM node:20-slim AS build
WORKDIR /app

# Manifests first: the dependency layer is reused while only sources change.
COPY package.json package-lock.json ./
COPY packages/protocol/package.json packages/protocol/
COPY packages/mux/package.json packages/mux/
COPY packages/bus/package.json packages/bus/
COPY apps/relay/package.json apps/relay/
COPY apps/agent/package.json apps/agent/
RUN npm ci

COPY tsconfig.json tsconfig.base.json ./
COPY packages packages
COPY apps apps
RUN npm run build && npm prune --omit=dev

# --- runtime: production dependencies and compiled output only ----------------------------------
FROM node:20-slim
ENV NODE_ENV=production \
    BURROW_HOST=0.0.0.0 \
    BURROW_PORT=8080
WORKDIR /app

COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
# node_modules/@burrow/* are links to these workspace folders.
COPY --from=build /app/packages/protocol/package.json packages/protocol/
COPY --from=build /app/packages/protocol/dist packages/protocol/dist
COPY --from=build /app/packages/mux/package.json packages/mux/
COPY --from=build /app/packages/mux/dist packages/mux/dist
COPY --from=build /app/packages/bus/package.json packages/bus/
COPY --from=build /app/packages/bus/dist packages/bus/dist
COPY --from=build /app/apps/relay/package.json apps/relay/
COPY --from=build /app/apps/relay/dist apps/relay/dist
# The agent too, so `docker run --entrypoint burrow ...` can test a relay from inside.
COPY --from=build /app/apps/agent/package.json apps/agent/
COPY --from=build /app/apps/agent/dist apps/agent/dist

RUN chmod +x apps/relay/dist/main.js apps/agent/dist/bin.js \
 && ln -s /app/apps/relay/dist/main.js /usr/local/bin/burrow-relay \
 && ln -s /app/apps/agent/dist/bin.js /usr/local/bin/burrow

USER node
EXPOSE 8080

# /healthz is served on any Host that is not a tunnel host, 127.0.0.1 included.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.BURROW_PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# Node runs as PID 1 and handles SIGTERM itself: GOAWAY to every agent, then exit 0.
ENTRYPOINT ["burrow-relay"]
