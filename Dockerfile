# Multi-stage build: compile with the full toolchain, ship a small runtime
# image that runs as a non-root user with the data directory as a volume.
FROM rust:1.95-slim-bookworm AS build
# make: jemalloc (the binary's allocator) is built from C with configure + make.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p bwenge --bin bwenge \
 && strip target/release/bwenge

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/bwenge --shell /usr/sbin/nologin bwenge \
 && mkdir -p /var/lib/bwenge /app \
 && chown bwenge /var/lib/bwenge
WORKDIR /app
COPY --from=build /src/target/release/bwenge /usr/local/bin/bwenge
COPY config/ /app/config/
ENV BWENGE_ENV=production \
    BWENGE_BIND=0.0.0.0:8080 \
    BWENGE_DATA_DIR=/var/lib/bwenge
VOLUME ["/var/lib/bwenge"]
EXPOSE 8080
USER bwenge
ENTRYPOINT ["bwenge"]
CMD ["serve"]
