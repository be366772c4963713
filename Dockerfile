# syntax=docker/dockerfile:1
#
# The scim-proxy image: one static binary on an empty base, run as a numeric non-root user.
#
#   docker build --build-arg SCIM_PROXY_GIT_REVISION=$(git rev-parse HEAD) \
#     -t registry.example.com/scim-proxy:0.1 .
#
# The configuration is not part of the image: mount proxy.yaml and the mapping scripts at
# /etc/scim-proxy (deploy/kubernetes/ does it with a ConfigMap). Needs BuildKit (the default
# builder of current Docker releases) for the cache mount below.

# ---------------------------------------------------------------- build
# rust:*-alpine builds for musl, whose binaries are statically linked by default: the result
# runs on `scratch`, without a libc. The crate needs Rust 1.85 or newer (edition 2024).
#
# Pinned by digest, so a rebuild of the same commit compiles with the same toolchain and
# Alpine packages; the tag in front says which they are (the digest alone decides what is
# pulled). The digest is that of the multi-platform index Docker Hub published for the tag,
# as it is pinned in public Dockerfiles; it was not pulled where this line was written, so
# a first build checks it. To update (a new Rust release, or a rebuilt tag with security
# fixes), pick the tag and write the digest it has now, which the first line of
#   docker buildx imagetools inspect rust:1.95.0-alpine3.23
# shows (or let Renovate or Dependabot keep tag and digest current).
FROM rust:1.95.0-alpine3.23@sha256:606fd313a0f49743ee2a7bd49a0914bab7deedb12791f3a846a34a4711db7ed2 AS build
# gcc and musl-dev: `ring` (rustls' cryptography) compiles C and assembly and links against musl.
RUN apk add --no-cache gcc musl-dev ca-certificates
WORKDIR /build

# Dependencies are downloaded first, in their own layer: it is redone only when the manifests (the
# workspace's and that of acme/, the bundled Acme Directory API that `demo` starts), the lock
# file, the build script or the benchmarks change (Cargo reads benches/ to validate the manifest's
# [[bench]] entries), not when the source does.
COPY Cargo.toml Cargo.lock build.rs ./
COPY benches benches
COPY acme/Cargo.toml acme/
RUN cargo fetch --locked

# The commit built, for the scim_proxy_build_info metric and the image's revision label: the
# build context holds no .git (see .dockerignore), so build.rs cannot ask git.
ARG SCIM_PROXY_GIT_REVISION=unknown

# The cache mount keeps compiled dependencies between builds on the same builder; the
# binary is copied out in the same step because the mount is not part of the image. The
# release profile strips symbols and debug information and optimises the program as one unit
# across crates (fat LTO: a longer build, less CPU a request; see Cargo.toml). `demo` has the
# shipped configuration and script built in (include_str!), and the Acme Directory crate linked
# in (the `demo` feature, on by default).
COPY src src
COPY acme acme
COPY proxy.yaml ./
COPY scripts/demo.rhai scripts/
RUN --mount=type=cache,id=scim-proxy-target,target=/build/target \
    cargo build --release --locked --offline --bin scim-proxy \
 && cp target/release/scim-proxy /scim-proxy

# ---------------------------------------------------------------- runtime
FROM scratch
ARG SCIM_PROXY_GIT_REVISION=unknown
# OCI annotations; version, licenses and description are Cargo.toml's (a test keeps them equal).
LABEL org.opencontainers.image.title="scim-proxy" \
      org.opencontainers.image.description="A reverse proxy that gives an existing application a complete SCIM 2.0 endpoint through a Rhai mapping script" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.revision="${SCIM_PROXY_GIT_REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The CA bundle at its standard path, as of the build. The proxy verifies HTTPS legacy apps
# against the Mozilla roots compiled into the binary and reads no bundle by itself; an app
# whose certificate comes from a private CA is trusted through its `legacy.ca_file` (mount
# that CA's PEM file and name it there; it then replaces the built-in roots for that app).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /scim-proxy /scim-proxy
# A numeric user, so that Kubernetes' runAsNonRoot can verify it: scratch has no /etc/passwd.
USER 65532:65532
# Runs the binary once at build time: on `scratch` that only succeeds if it is static.
RUN ["/scim-proxy", "--version"]
# 8080: SCIM (`listen`); 9090: admin, /healthz and /readyz (`admin_listen`).
EXPOSE 8080 9090
# Exec form: scratch has no shell. `live` (/healthz) rather than `ready`: Docker Swarm replaces
# an unhealthy container, which mends a stuck process but not a legacy app that is down (what
# /readyz also reports). For compose's `depends_on: condition: service_healthy`, override it
# with `test: ["CMD", "/scim-proxy", "probe", "ready"]`. The probe asks
# http://127.0.0.1:9090; with another admin_listen, set SCIM_PROXY_ADMIN. Kubernetes ignores
# HEALTHCHECK: deploy/kubernetes has its own probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/scim-proxy", "probe", "live"]
ENTRYPOINT ["/scim-proxy"]
CMD ["run", "--config", "/etc/scim-proxy/proxy.yaml"]
