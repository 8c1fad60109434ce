# The demo peers of examples/ (mock auth service, event producer) for deploy/docker-compose.yml:
# Moleculer 0.14 on Node.js, configured like the node (TRANSPORTER, NAMESPACE, NODEID, LOGLEVEL).
#   docker build -f deploy/examples.Dockerfile -t steedos-socket-examples .
FROM node:20-slim
WORKDIR /app/examples
COPY examples/package.json ./
# examples/package.json pins moleculer (0.14.36) and nats (^2.29.3), as tests/interop does.
RUN npm install --omit=dev --no-audit --no-fund --loglevel=error
COPY examples/ ./
USER node
CMD ["node", "mock-auth.js"]
