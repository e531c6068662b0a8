# Compactor image for AWS Lambda (container image, x86_64). Build from the
# repository root and push to ECR:
#   docker build -f infra/docker/compactor-lambda.Dockerfile -t horizon/telemetry-compactor .
# The same image runs the CLI outside Lambda:
#   docker run --rm -e HORIZON_STORE_URL=s3://bucket/prefix horizon/telemetry-compactor --dry-run
# Lambda starts it with no arguments and AWS_LAMBDA_RUNTIME_API set, which
# selects the function mode; settings come from HORIZON_* variables
# (docs/compaction.md).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin telemetry-compactor

# The Lambda base for custom runtimes: Amazon Linux 2023 with the runtime
# interface emulator for local runs. glibc there is newer than bookworm's.
FROM public.ecr.aws/lambda/provided:al2023
COPY --from=build /src/target/release/telemetry-compactor /usr/local/bin/telemetry-compactor
ENV HORIZON_WORK_DIR=/tmp
ENTRYPOINT ["/usr/local/bin/telemetry-compactor"]
