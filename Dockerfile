# conclave serve in a container: the binary, the example agents and policies.
#   docker build -t conclave .
#   docker run -e DESK_TOKEN=change-me -e CONCLAVE_DATABASE_URL=postgres://… -p 8080:8080 conclave
# Without CONCLAVE_DATABASE_URL it keeps trust and the audit log in /data (a volume).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
COPY examples examples
COPY tests tests
COPY README.md ./
RUN cargo build --release --locked --bin conclave

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data conclave && mkdir -p /data && chown conclave /data
COPY --from=build /src/target/release/conclave /usr/local/bin/conclave
COPY agents /etc/conclave/agents
COPY policies /etc/conclave/policies
USER conclave
ENV CONCLAVE_STORE=/data
VOLUME /data
EXPOSE 8080
# A non-loopback address needs a token: its variable's name is given, never the token.
ENTRYPOINT ["conclave", "serve", "--addr", "0.0.0.0:8080", "--token-env", "DESK_TOKEN", \
            "--agents", "/etc/conclave/agents", "--policies", "/etc/conclave/policies"]
