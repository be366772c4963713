# syntax=docker/dockerfile:1
#
# The scim-proxy image: one static binary on an empty base, run as a numeric non-root user.
#
#   docker build -t registry.example.com/scim-proxy:0.1 .
#
# The configuration is not part of the image: mount proxy.yaml and the mapping scripts at
# /etc/scim-proxy (deploy/kubernetes/ does it with a ConfigMap). Needs BuildKit (the default
# builder of current Docker releases) for the cache mount below.

# ---------------------------------------------------------------- build
# rust:*-alpine builds for musl, whose binaries are statically linked by default: the result
# runs on `scratch`, without a libc. The crate needs Rust 1.85 or newer (edition 2024).
FROM rust:1-alpine AS build
# gcc and musl-dev: `ring` (rustls' cryptography) compiles C and assembly and links against musl.
RUN apk add --no-cache gcc musl-dev ca-certificates
WORKDIR /build

# Dependencies are downloaded first, in their own layer: it is redone only when the manifest, the lock
# file or the benchmarks change (Cargo reads benches/ to validate the manifest's [[bench]]
# entries), not when the source does.
COPY Cargo.toml Cargo.lock ./
COPY benches benches
RUN cargo fetch --locked

# The cache mount keeps compiled dependencies between builds on the same builder; the
# binary is copied out in the same step because the mount is not part of the image.
# `demo` has the shipped configuration and script built in (include_str!).
COPY src src
COPY proxy.yaml ./
COPY scripts/demo.rhai scripts/
RUN --mount=type=cache,id=scim-proxy-target,target=/build/target \
    cargo build --release --locked --offline --bin scim-proxy \
 && cp target/release/scim-proxy /scim-proxy

# ---------------------------------------------------------------- runtime
FROM scratch
# The CA bundle at its standard path. Note: this version verifies HTTPS legacy apps against
# the Mozilla roots compiled into the binary (reqwest's webpki-roots) and does not read this
# file, so a private in-house CA is not trusted yet, whatever the bundle holds.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /scim-proxy /scim-proxy
# A numeric user, so that Kubernetes' runAsNonRoot can verify it: scratch has no /etc/passwd.
USER 65532:65532
# Runs the binary once at build time: on `scratch` that only succeeds if it is static.
RUN ["/scim-proxy", "--version"]
# 8080: SCIM (`listen`); 9090: admin, /healthz and /readyz (`admin_listen`).
EXPOSE 8080 9090
ENTRYPOINT ["/scim-proxy"]
CMD ["run", "--config", "/etc/scim-proxy/proxy.yaml"]
