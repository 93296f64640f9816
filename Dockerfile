# syntax=docker/dockerfile:1
#
# Tailkeeper operator image: a static (musl) binary on distroless, running as non-root 65532.
#
#   docker build -t ghcr.io/tailkeeper/tailkeeper:0.1.0 .

ARG RUST_VERSION=1.95

# ---------------------------------------------------------------------------------- builder
FROM rust:${RUST_VERSION}-bookworm AS builder
ARG TARGET=x86_64-unknown-linux-musl
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${TARGET}"
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    CC_x86_64_unknown_linux_musl=musl-gcc

# Dependency layer: only the manifests and stub sources, so this layer is rebuilt only when
# Cargo.toml or Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
COPY simulator/Cargo.toml simulator/Cargo.toml
RUN mkdir -p src simulator/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > simulator/src/main.rs \
 && touch simulator/src/lib.rs \
 && cargo build --release --locked --target "${TARGET}" -p tailkeeper --bin tailkeeper \
 && rm -rf src simulator/src \
    target/${TARGET}/release/tailkeeper* \
    target/${TARGET}/release/deps/tailkeeper-* target/${TARGET}/release/deps/libtailkeeper-* \
    target/${TARGET}/release/.fingerprint/tailkeeper-*

# The real sources.
COPY src src
COPY simulator/src simulator/src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target "${TARGET}" -p tailkeeper --bin tailkeeper \
 && cp "target/${TARGET}/release/tailkeeper" /tailkeeper \
 && /tailkeeper --version

# ------------------------------------------------------------------------------------ final
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="tailkeeper" \
      org.opencontainers.image.description="Access-governance operator for Tailscale tailnets" \
      org.opencontainers.image.source="https://github.com/tailkeeper/tailkeeper" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /tailkeeper /tailkeeper
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/tailkeeper"]
CMD ["run"]
