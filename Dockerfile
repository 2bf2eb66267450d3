# Builds the server and the operator app, then ships both in a slim image.
# With network access the builder uses rustup's wasm32 target, which
# `cargo xtask frontend` prefers over the Debian rustc-web route.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add wasm32-unknown-unknown
WORKDIR /src
COPY . .
RUN cargo install wasm-bindgen-cli --version "$(cargo pkgid -p wasm-bindgen | sed 's/.*@//')" \
 && (cd frontend && npm ci) \
 && cargo xtask frontend \
 && cargo build --release -p trackside

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/trackside /usr/local/bin/trackside
COPY --from=build /src/target/site /usr/share/trackside/site
ENV TRACKSIDE_ASSETS_DIR=/usr/share/trackside/site
EXPOSE 8080 8443 8883 1883 1884
ENTRYPOINT ["trackside"]
