# syntax=docker/dockerfile:1
# steedos-socket: a C++17 Moleculer node with a Socket.IO gateway.
#   docker build -t steedos-socket .
#   docker run --rm -p 5100:5100 -e TRANSPORTER=nats://nats:4222 steedos-socket
# Every RUN line calls one project script with arguments: scripts/container-steps.sh runs the
# same commands on a host into a staging root (same paths below it) and then starts, probes,
# connects to and stops the result, which is how CI tests this file without a Docker engine.
#
# Configuration: from the environment (TRANSPORTER, NAMESPACE, NODEID, PORT, LOGLEVEL, LOGFORMAT,
# PROTOCOL_VERSION), over the file MOLECULER_CONFIG names (the repository's defaults, installed in
# /opt/steedos-socket/etc/steedos-socket/); mount another file and point MOLECULER_CONFIG at it
# rather than passing --config, so that the HEALTHCHECK reads the same file.

# ---- build: scripts/setup.sh (the one package list) and the project's build --------------------
FROM debian:12-slim AS build
WORKDIR /src
# setup.sh and the client's lockfile first: the apt and npm layer is rebuilt only when they change.
COPY scripts/setup.sh scripts/
COPY client/package.json client/package-lock.json client/
# Debian packages for building (and nodejs/npm), the socket.io-client bundle (npm ci in client/).
RUN bash scripts/setup.sh --product
# The host's build/ and node_modules/ are not in the context (.dockerignore).
COPY . .
# scripts/build.sh into /src/build, then cmake --install --strip: bin/, share/steedos-socket/
# (client bundle, web/), etc/steedos-socket/moleculer.config.json.
RUN bash scripts/image.sh build /opt/steedos-socket
# The runtime packages, derived from the installed binary (ldd + dpkg -S, plus the libraries'
# Recommends: publicsuffix; ca-certificates for libssl), so no second package list is kept here:
# a library added to the build (prometheus-cpp, say) reaches the runtime image by itself.
RUN bash scripts/image.sh runtime-deps /opt/steedos-socket/bin/steedos-socket \
      /opt/steedos-socket/share/steedos-socket/runtime-packages

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:12-slim
# The package list first: the apt layer is reused while the list stays the same, whatever changed
# in the binary.
COPY --from=build /opt/steedos-socket/share/steedos-socket/runtime-packages \
     /opt/steedos-socket/share/steedos-socket/runtime-packages
# apt-get install of exactly the derived list (no recommends), apt lists dropped afterwards. The
# script is bind-mounted for this step only: nothing of the source tree stays in the image.
RUN --mount=type=bind,source=scripts/image.sh,target=/tmp/image.sh \
    bash /tmp/image.sh install-runtime /opt/steedos-socket/share/steedos-socket/runtime-packages
COPY --from=build /opt/steedos-socket /opt/steedos-socket
ENV PATH=/opt/steedos-socket/bin:$PATH \
    MOLECULER_CONFIG=/opt/steedos-socket/etc/steedos-socket/moleculer.config.json
# A numeric non-root user (no passwd entry needed): Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 5100
# The binary's own probe: it reads MOLECULER_CONFIG and PORT as the node does, so it follows
# gateway.port and gateway.healthPath; no curl in the image.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/opt/steedos-socket/bin/steedos-socket", "--probe", "health"]
# SIGTERM (docker stop) drains: new connections refused, the node leaves the cluster, sockets
# closed; exit 0 within gateway.drainTimeout (5 s), inside docker stop's default 10 s.
ENTRYPOINT ["/opt/steedos-socket/bin/steedos-socket"]
