# One image for the API, the Celery worker and beat, the operator, and backup Jobs;
# the process is chosen by the command (see the Helm chart and docker-compose.yml).

# pgBackRest's TLS protocol requires the same version at both ends: backup Jobs (this
# image) talk to the server beside PostgreSQL (the `postgresql` target). Both stages
# install exactly this Debian bookworm package, the version the test suite runs against.
ARG PGBACKREST_VERSION=2.45-1

# --- build: locked dependencies into a virtualenv, then the project itself ----------
FROM python:3.11-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
# Behind a TLS-intercepting proxy, HTTPS to PyPI needs its CA: pass the PEM text as
# --build-arg EXTRA_CA_CERTS="$(cat proxy-ca.crt)" (`make image` passes the files in
# EXTRA_CA_CERTS). Only this stage trusts it; the runtime image does not.
ARG EXTRA_CA_CERTS=""
RUN { cat /etc/ssl/certs/ca-certificates.crt; printf '%s\n' "$EXTRA_CA_CERTS"; } \
    > /etc/ssl/certs/build-bundle.pem
ENV SSL_CERT_FILE=/etc/ssl/certs/build-bundle.pem
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
# Dependencies first: this layer is reused until uv.lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project
COPY README.md ./
COPY amrutam ./amrutam
COPY api ./api
COPY workers ./workers
COPY operator ./operator
COPY backup ./backup
# Rebuilt every time: uv's cache keys a local project's wheel on pyproject.toml alone, so
# a cached wheel would ship the code of an earlier build.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --reinstall-package amrutam

# --- runtime: no compilers, no uv, a non-root user ------------------------------------
FROM python:3.11-slim-bookworm AS runtime
ARG PGBACKREST_VERSION
# pgbackrest for backup Jobs (and the operator's `pgbackrest info`).
RUN apt-get update \
 && apt-get install -y --no-install-recommends "pgbackrest=${PGBACKREST_VERSION}" \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 amrutam \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin amrutam
COPY --from=build /opt/venv /opt/venv
# MALLOC_MMAP_THRESHOLD_: glibc gives large blocks (a password hash's 19 MiB) back to
# the system when freed instead of keeping them in the thread's arena (docs/performance.md).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_MMAP_THRESHOLD_=1048576 \
    AMRUTAM_HOST=0.0.0.0 \
    AMRUTAM_ENVIRONMENT=production
# Everything written at run time goes to /tmp (an emptyDir in Kubernetes), so the root
# filesystem can be mounted read-only.
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000 9808 9810
CMD ["python", "-m", "api"]

# --- postgresql: PostgreSQL 15 with pgBackRest, for the chart's in-cluster database ----
# (`docker build --target postgresql`); it runs pgBackRest's TLS server beside
# PostgreSQL, and the operator's restore and drill Jobs boot restored data with it.
FROM postgres:15-bookworm AS postgresql
ARG PGBACKREST_VERSION
# From Debian's sources only, as in the application image: the base's PGDG source
# offers other pgBackRest releases (which the protocol refuses) and is unreachable from
# builders that only reach Debian's mirror, so it is set aside for this install.
RUN set -eu; aside=$(mktemp -d); \
    mv /etc/apt/sources.list.d/pgdg* "$aside"/ 2>/dev/null || true; \
    apt-get update; \
    apt-get install -y --no-install-recommends "pgbackrest=${PGBACKREST_VERSION}"; \
    rm -rf /var/lib/apt/lists/*; \
    mv "$aside"/* /etc/apt/sources.list.d/ 2>/dev/null || true; \
    rmdir "$aside"; \
    install -d -o postgres -g postgres /var/log/pgbackrest /var/lib/pgbackrest /var/spool/pgbackrest /tmp/pgbackrest
USER postgres

# The default target: the application image.
FROM runtime
