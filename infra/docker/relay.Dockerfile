# Relay image. Build from the repository root:
#   docker build -f infra/docker/relay.Dockerfile -t horizon/telemetry-relay .
# Run (QUIC is UDP):
#   docker run -p 5001:5001/udp -p 9091:9091 -v /etc/horizon:/etc/horizon:ro \
#     -e INFLUXDB_TOKEN horizon/telemetry-relay /etc/horizon/relay.yaml
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin telemetry-relay --bin telemetry-loadgen

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/horizon horizon \
    && mkdir -p /var/lib/horizon && chown horizon /var/lib/horizon
COPY --from=build /src/target/release/telemetry-relay /src/target/release/telemetry-loadgen /usr/local/bin/
USER horizon
WORKDIR /var/lib/horizon
EXPOSE 5001/udp 9091/tcp
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=2s CMD ["/bin/sh", "-c", "exec 3<>/dev/tcp/127.0.0.1/9091 && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
ENTRYPOINT ["/usr/local/bin/telemetry-relay"]
