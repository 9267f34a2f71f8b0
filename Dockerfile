# One image for the operator and for `modelship fetch` (the model fetcher init container).
# Build: make image (needs docker or podman).
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY operator/ operator/
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev --no-audit --no-fund

FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/package.json ./
COPY crds/ ./crds/
USER 65532:65532
# The heap sizing the chart sets too (values.yaml nodeOptions); override NODE_OPTIONS for more objects.
ENV NODE_OPTIONS="--max-semi-space-size=4 --max-old-space-size=384"
# The root filesystem is read-only in the chart; Node needs nothing writable but /tmp (an emptyDir).
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/operator/main.js"]
CMD ["run"]
