# suppression-gateway: build wheels from pinned, hash-checked requirements, then copy the venv and
# the project into a slim runtime that runs as a numeric non-root user. README.md ("Run in a
# container") tells how to run it; scripts/container-check checks it, in CI on every submission.
#
# The base is named by tag because this project's machines build a local stand-in under that tag
# (they cannot pull). A release build pins it by digest instead: replace both FROM lines' tag
# with python:3.11-slim@sha256:<digest> (`docker buildx imagetools inspect python:3.11-slim`).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first, from the lock files only: this layer is rebuilt when a lock changes, not
# when the source does. Every download is checked against its hash.
COPY deploy/build-requirements.lock deploy/requirements.lock deploy/
RUN python -m pip install --require-hashes --no-deps -r deploy/build-requirements.lock \
 && python -m pip wheel --require-hashes --no-deps --no-build-isolation --wheel-dir /wheels \
      -r deploy/requirements.lock \
 && python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install --no-index --no-deps /wheels/*.whl \
 && echo /opt/app > "$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/suppression-gateway.pth"
# Then the project itself, offline (--no-index), into /opt/app (on the venv's path through the
# .pth above): a source change makes a new layer of about 1 MB, not a new copy of the venv.
COPY pyproject.toml README.md ./
COPY suppression suppression
COPY gateway gateway
RUN python -m pip wheel --no-index --no-deps --no-build-isolation --wheel-dir /dist . \
 && python -m pip --python /opt/venv/bin/python install --no-index --no-deps --target /opt/app \
      /dist/*.whl

FROM python:3.11-slim
# uid and gid are numbers, fixed, so Kubernetes' runAsNonRoot can verify them and a host
# directory can be chowned to match; no home directory (nothing lands in the data volume).
RUN groupadd --gid 10001 gateway \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin gateway \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/suppression-gateway
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/app /opt/app
COPY config/container.toml /etc/suppression-gateway/gateway.toml
COPY config/gateway.example.toml /etc/suppression-gateway/gateway.example.toml
# The store is in the file too; here as well so that `docker exec CONTAINER suppression-gateway
# ...` without --config opens the same store (four slashes: an absolute path, in the volume).
ENV PATH=/opt/app/bin:/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SGW_STORE_URL=sqlite:////var/lib/suppression-gateway/suppression.db
# The store and its secrets file (suppression.db, suppression.db.secrets.json): keep this volume.
VOLUME /var/lib/suppression-gateway
WORKDIR /var/lib/suppression-gateway
USER 10001:10001
EXPOSE 2525 8025
# docker stop sends SIGTERM; the image's file drains for 8 s (smtp.shutdown_grace), inside
# Docker's default 10 s stop timeout. Raise both together (README: "Run in a container").
STOPSIGNAL SIGTERM
# Follows SGW_HTTP_LISTEN / [http] listen; one line, no traceback, when it fails.
HEALTHCHECK --interval=5s --timeout=4s --start-period=30s --retries=3 \
  CMD ["python", "-m", "gateway.healthcheck"]
LABEL org.opencontainers.image.title="suppression-gateway" \
      org.opencontainers.image.description="Consent-enforcing SMTP proxy" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="python:3.11-slim"
ENTRYPOINT ["suppression-gateway"]
CMD ["serve", "--config", "/etc/suppression-gateway/gateway.toml"]
