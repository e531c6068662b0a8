# Compactor image for AWS Lambda (container image, x86_64). Build from the
# repository root and push to ECR:
#   docker build -f infra/docker/compactor-lambda.Dockerfile -t horizon/telemetry-compactor .
# The same image runs the CLI outside Lambda:
#   docker run --rm -e HORIZON_STORE_URL=s3://bucket/prefix horizon/telemetry-compactor --dry-run
# Lambda starts it with no arguments and AWS_LAMBDA_RUNTIME_API set, which
# selects the function mode; settings come from HORIZON_* variables
# (docs/compaction.md).
#
# The binary is built on Amazon Linux 2023, the base of the runtime image:
# a build on a newer glibc (Debian bookworm has 2.36, AL2023 2.34) may not
# start there.
FROM public.ecr.aws/amazonlinux/amazonlinux:2023 AS build
RUN dnf install -y --setopt=install_weak_deps=False gcc gcc-c++ make cmake tar gzip \
    && dnf clean all \
    && curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
       | sh -s -- -y --profile minimal --default-toolchain 1.95.0
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin telemetry-compactor

FROM public.ecr.aws/lambda/provided:al2023
COPY --from=build /src/target/release/telemetry-compactor /usr/local/bin/telemetry-compactor
ENV HORIZON_WORK_DIR=/tmp
ENTRYPOINT ["/usr/local/bin/telemetry-compactor"]
