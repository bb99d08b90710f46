# Herald in a container: built from this repository, run as an unprivileged user, state in a
# volume. docs/deploy.md says how to run it (set HERALD_PUBLIC_URL).
#   docker build --build-arg HERALD_COMMIT=$(git rev-parse --short=12 HEAD) -t herald .
#   docker run -p 8080:8080 -v herald-state:/var/lib/herald \
#     -e HERALD_PUBLIC_URL=https://hub.example.org/hub herald
FROM rust:1-bookworm AS build
WORKDIR /src
# .git stays out of the context; the commit shown by `herald --version` comes from here.
ARG HERALD_COMMIT=unknown
ENV HERALD_COMMIT=$HERALD_COMMIT
COPY . .
RUN cargo build --release --locked && strip target/release/herald

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --uid 10001 --home-dir /var/lib/herald --create-home herald
COPY --from=build /src/target/release/herald /usr/bin/herald
USER herald
WORKDIR /var/lib/herald
VOLUME ["/var/lib/herald"]
ENV HERALD_DATABASE_URL=sqlite:///var/lib/herald/herald.db \
    HERALD_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s \
  CMD curl -fsS http://127.0.0.1:8080/health >/dev/null || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/herald"]
CMD ["serve"]
