# syntax=docker/dockerfile:1
#
# officeswitch container image: a Rust build stage, then a small Debian runtime holding the
# binary, a default configuration and the example rules, run as an unprivileged user.
#
#   docker build -t officeswitch .
#   docker run --rm -p 8080:8080 -v officeswitch-state:/var/lib/officeswitch \
#       --stop-timeout 45 officeswitch
#   docker run --rm officeswitch check-config
#
# No HEALTHCHECK: orchestrators probe /healthz and /readyz themselves (see
# deploy/kubernetes/deployment.yaml), and the runtime image carries no HTTP client.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /build

# Dependencies first, in a layer that only Cargo.toml and Cargo.lock invalidate: build them
# against empty stand-ins for the crate's own targets (every [[bench]], [[example]] and
# [[test]] that Cargo.toml names must exist for it to load), then drop the stand-ins'
# outputs. Examples and tests are not in the build context; their stand-ins stay.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches examples tests \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && for target in $(awk '/^\[\[(bench|example|test)\]\]/ { kind = $0; next } \
                            kind && /^name *=/ { gsub(/^name *= *"|"$/, ""); \
                                dir = kind ~ /bench/ ? "benches" : kind ~ /example/ ? "examples" : "tests"; \
                                print dir "/" $0 ".rs"; kind = "" }' Cargo.toml); do \
           echo 'fn main() {}' > "$target"; \
       done \
    && cargo build --release --locked \
    && rm -rf src benches target/release/officeswitch* \
        target/release/deps/officeswitch-* target/release/deps/libofficeswitch-* \
        target/release/.fingerprint/officeswitch-*

# The crate itself.
COPY src src
COPY benches benches
RUN cargo build --release --locked \
    && strip target/release/officeswitch \
    && ./target/release/officeswitch --version

FROM debian:${DEBIAN_RELEASE}-slim

LABEL org.opencontainers.image.title="officeswitch" \
      org.opencontainers.image.description="One WOPI editor URL for Nextcloud: OnlyOffice Docs for OOXML, Collabora Online for ODF"

# CA certificates for https:// editor nodes and rediss:// pin stores; a numeric user so that
# Kubernetes' runAsNonRoot can verify it; the state directory owned by that user, so a
# fresh named volume mounted there is writable.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 officeswitch \
    && useradd --system --uid 10001 --gid officeswitch --no-create-home \
        --home-dir /var/lib/officeswitch --shell /usr/sbin/nologin officeswitch \
    && install -d -o officeswitch -g officeswitch -m 0700 /var/lib/officeswitch

COPY --from=builder /build/target/release/officeswitch /usr/local/bin/officeswitch
COPY deploy/docker/officeswitch.toml /etc/officeswitch/officeswitch.toml
COPY rules/ /etc/officeswitch/rules/

USER 10001:10001
# `officeswitch check-config` (or any command without --config) reads officeswitch.toml here.
WORKDIR /etc/officeswitch
VOLUME ["/var/lib/officeswitch"]
EXPOSE 8080
# SIGTERM starts the graceful drain ([drain] in officeswitch.toml).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/officeswitch"]
CMD ["run", "--config", "/etc/officeswitch/officeswitch.toml"]
