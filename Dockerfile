# steedos-socket: a C++17 Moleculer node with a Socket.IO gateway.
#   docker build -t steedos-socket .
#   docker run --rm -p 5100:5100 -e TRANSPORTER=nats://nats:4222 steedos-socket
# The config baked in is /app/moleculer.config.json; mount another one over it or pass
# `--config /path` as the container's arguments.

# ---- build ------------------------------------------------------------------------------------
FROM debian:12-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      nats-server libnats-dev libwebsocketpp-dev libasio-dev libspdlog-dev nlohmann-json3-dev \
      doctest-dev libssl-dev pkg-config cmake g++ make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Build outside the source tree so that a host build/ copied along with the context is not reused.
RUN cmake -S /src -B /tmp/build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTEEDOS_BUILD_TESTS=OFF \
 && cmake --build /tmp/build -j"$(nproc)" --target steedos-socket \
 && strip --strip-debug -o /tmp/steedos-socket /tmp/build/steedos-socket

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libnats3.4 libspdlog1.10 libfmt9 libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin steedos
COPY --from=build /tmp/steedos-socket /usr/local/bin/steedos-socket
COPY moleculer.config.json /app/moleculer.config.json
WORKDIR /app
USER steedos
EXPOSE 5100
ENTRYPOINT ["/usr/local/bin/steedos-socket"]
CMD ["--config", "/app/moleculer.config.json"]
