# syntax=docker/dockerfile:1
# scopegate container image: a static-ish Rust binary on distroless (glibc, CA certificates,
# no shell), running as the distroless "nonroot" user 65532.
#
#   docker build -t scopegate:dev .
#   docker run --rm -v "$PWD/config.example.toml:/etc/scopegate/config.toml:ro" scopegate:dev check

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Dependencies are resolved from Cargo.lock only (--locked); registry and target directory
# are BuildKit cache mounts, so the binary is copied out of the cache to /out.
# The production build: --no-default-features leaves out the `dev` feature (the development
# authorization server behind `demo` and `dev-issuer`, which approves everyone), and the
# `container` profile is release without symbols or debug info.
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src ./src
# Cargo.toml names the benchmarks, so cargo wants their files even to build the binary.
COPY benches ./benches
COPY tests ./tests
COPY config.example.toml ./
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --profile container --no-default-features --locked --bin scopegate \
    && mkdir -p /out \
    && cp target/container/scopegate /out/scopegate
# Smoke test: the binary starts, the shipped example config validates, and the
# development server is not in it (clap refuses `demo` as an unknown subcommand; `--help`
# so that a binary which still had it would exit at once instead of serving).
RUN /out/scopegate --version \
    && /out/scopegate check --config config.example.toml >/dev/null \
    && ! /out/scopegate demo --help >/dev/null 2>&1

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="scopegate" \
      org.opencontainers.image.description="OAuth 2.0 resource-server sidecar: validates bearer tokens, enforces route scopes, streams to the upstream" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build --chown=0:0 --chmod=0755 /out/scopegate /scopegate
# Mount the config here (the Helm chart does), or pass --config / SCOPEGATE_CONFIG.
ENV SCOPEGATE_CONFIG=/etc/scopegate/config.toml
USER 65532:65532
# Data listener and admin listener (/healthz, /readyz, /metrics), as in the Helm chart's config.
EXPOSE 8080 9901
ENTRYPOINT ["/scopegate"]
CMD ["run"]
