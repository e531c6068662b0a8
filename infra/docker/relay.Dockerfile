# Relay image. Build from the repository root:
#   docker build -f infra/docker/relay.Dockerfile -t horizon/telemetry-relay .
# Run (QUIC is UDP):
#   docker run -p 5001:5001/udp -p 9091:9091 -v /etc/horizon:/etc/horizon:ro \
#     -e INFLUXDB_TOKEN horizon/telemetry-relay /etc/horizon/relay.yaml
# The bare binaries for the Terraform deployment's EC2 instances (Amazon
# Linux 2023), without an image:
#   docker build -f infra/docker/relay.Dockerfile --target binaries --output dist .
#
# Built on Amazon Linux 2023 (glibc 2.34), so the binary also runs on the
# EC2 instances; the Debian runtime image below has a newer glibc, which
# runs it too.
FROM public.ecr.aws/amazonlinux/amazonlinux:2023 AS build
RUN dnf install -y --setopt=install_weak_deps=False gcc gcc-c++ make cmake tar gzip \
    && dnf clean all \
    && curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
       | sh -s -- -y --profile minimal --default-toolchain 1.95.0
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin telemetry-relay --bin telemetry-loadgen

FROM scratch AS binaries
COPY --from=build /src/target/release/telemetry-relay /src/target/release/telemetry-loadgen /

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
