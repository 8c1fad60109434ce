# steedos-socket: a C++17 Moleculer node with a Socket.IO gateway.
#   docker build -t steedos-socket .
#   docker run --rm -p 5100:5100 -e TRANSPORTER=nats://nats:4222 steedos-socket
# The config baked in is /app/moleculer.config.json; mount another one over it or pass
# `--config /path` as the container's arguments. The socket.io-client bundle (served at
# /socket.io/socket.io.js) and the demo page lie in /usr/local/share/steedos-socket/, where the
# binary in /usr/local/bin finds them by default (gateway.clientBundle null).

# ---- build ------------------------------------------------------------------------------------
FROM debian:12-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      nats-server libnats-dev libwebsocketpp-dev libasio-dev libspdlog-dev nlohmann-json3-dev \
      doctest-dev libssl-dev libpsl-dev publicsuffix pkg-config cmake g++ make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Build outside the source tree so that a host build/ copied along with the context is not reused.
RUN cmake -S /src -B /tmp/build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTEEDOS_BUILD_TESTS=OFF \
 && cmake --build /tmp/build -j"$(nproc)" --target steedos-socket \
 && strip --strip-debug -o /tmp/steedos-socket /tmp/build/steedos-socket

# ---- socket.io-client bundle: npm ci in client/, pinned by its lockfile -----------------------
FROM debian:12-slim AS bundle
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src/client
COPY client/package.json client/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && mkdir -p /tmp/socket.io-client \
 && cd node_modules/socket.io-client \
 && cp LICENSE dist/socket.io.js dist/socket.io.js.map dist/socket.io.min.js \
       dist/socket.io.min.js.map /tmp/socket.io-client/

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libnats3.4 libspdlog1.10 libfmt9 libssl3 libpsl5 publicsuffix ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin steedos
COPY --from=build /tmp/steedos-socket /usr/local/bin/steedos-socket
COPY --from=bundle /tmp/socket.io-client/ /usr/local/share/steedos-socket/socket.io-client/
COPY web/ /usr/local/share/steedos-socket/web/
COPY moleculer.config.json /app/moleculer.config.json
WORKDIR /app
USER steedos
EXPOSE 5100
ENTRYPOINT ["/usr/local/bin/steedos-socket"]
CMD ["--config", "/app/moleculer.config.json"]
