# syntax=docker/dockerfile:1
# The production image: the release binary without the emulator and the test hooks
# (--no-default-features --features aws), on a distroless runtime (glibc, CA certificates,
# no shell, no package manager), as a numeric non-root user. .ci/run builds and smoke-tests
# the same binary with the same command, so what this image contains is tested.
#
#   docker build -t registry.example.com/rekey:0.1.0 .
#   docker run --rm registry.example.com/rekey:0.1.0 --help

ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# The context has no .git (.dockerignore): pass the commit for `rekey --version`:
#   docker build --build-arg REKEY_BUILD_COMMIT=$(git rev-parse --short=12 HEAD) ...
ARG REKEY_BUILD_COMMIT=unknown
ENV REKEY_BUILD_COMMIT=${REKEY_BUILD_COMMIT}
# Cargo.toml names an example target; the manifest needs its file even though it is not built.
COPY examples ./examples
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --features aws \
    && install -m 0755 target/release/rekey /rekey

# For CI systems that need a shell in the job image (GitLab CI): the same binary on distroless's
# debug variant (busybox). docker build --target ci -t registry.example.com/rekey:0.1.0-ci .
FROM gcr.io/distroless/cc-debian12:debug-nonroot AS ci
COPY --from=build /rekey /usr/local/bin/rekey
ENV REKEY_IN_CONTAINER=1
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/rekey"]

# The default (last) stage: the production image.
FROM gcr.io/distroless/cc-debian12:nonroot AS production
ARG REKEY_BUILD_COMMIT=unknown
# OCI image annotations (https://github.com/opencontainers/image-spec, annotations.md).
LABEL org.opencontainers.image.title="rekey" \
      org.opencontainers.image.description="Rotates Taegis XDR and Cisco XDR API client credentials into a vault backend" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.revision="${REKEY_BUILD_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build /rekey /usr/local/bin/rekey
# Tells rekey it runs in a container (it refuses to run as root there unless told to).
ENV REKEY_IN_CONTAINER=1 \
    REKEY_LOG_FORMAT=json
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/rekey"]
CMD ["--help"]
