# Node agent image (for the DaemonSet in infra/k8s/agent-daemonset.yaml).
# Build from the repository root:
#   docker build -f infra/docker/agent.Dockerfile -t horizon/telemetry-agent .
# Run on a node (NVML needs the NVIDIA container runtime to mount the driver):
#   docker run --runtime=nvidia --gpus all --network host \
#     -v /etc/horizon:/etc/horizon:ro -v /var/lib/horizon-agent:/var/lib/horizon \
#     horizon/telemetry-agent /etc/horizon/agent.yaml
# The bare binary, without an image:
#   docker build -f infra/docker/agent.Dockerfile --target binaries --output dist .
#
# Built on Amazon Linux 2023 (glibc 2.34), like the relay, so the binary
# runs on older nodes too.
FROM public.ecr.aws/amazonlinux/amazonlinux:2023 AS build
RUN dnf install -y --setopt=install_weak_deps=False gcc gcc-c++ make cmake tar gzip \
    && dnf clean all \
    && curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
       | sh -s -- -y --profile minimal --default-toolchain 1.95.0
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p horizon-agent --bin telemetry-agent

FROM scratch AS binaries
COPY --from=build /src/target/release/telemetry-agent /

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/horizon horizon \
    && mkdir -p /var/lib/horizon && chown horizon /var/lib/horizon
COPY --from=build /src/target/release/telemetry-agent /usr/local/bin/
USER horizon
WORKDIR /var/lib/horizon
EXPOSE 9102/tcp
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=2s CMD ["/bin/sh", "-c", "exec 3<>/dev/tcp/127.0.0.1/9102 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
ENTRYPOINT ["/usr/local/bin/telemetry-agent"]
