# syntax=docker/dockerfile:1
# Build stage: the same release build CI and the README use.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# The whole context minus .dockerignore: src/ plus config/ (the demo config is embedded) and
# tests/ (Cargo.toml names the integration-test target).
COPY . .
RUN cargo build --locked --release --bin portcullis && strip target/release/portcullis

# Runtime: small, CA certificates for https upstreams and the IdP, non-root.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin portcullis
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
USER 10001:10001
EXPOSE 4180
ENV PORTCULLIS_CONFIG=/etc/portcullis/portcullis.toml
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["run"]
