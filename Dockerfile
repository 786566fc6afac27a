# syntax=docker/dockerfile:1
# Multi-stage: build a wheel, install it into a slim runtime as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY suppression ./suppression
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/suppression-gateway --create-home gateway
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config /etc/suppression-gateway
WORKDIR /var/lib/suppression-gateway
USER gateway
# In a container the listeners must bind beyond loopback; clients still need networks or AUTH.
ENV SGW_SMTP_LISTEN=0.0.0.0:2525 \
    SGW_HTTP_LISTEN=0.0.0.0:8025 \
    SGW_STORE_URL=sqlite:///var/lib/suppression-gateway/suppression.db \
    SGW_LOG_FORMAT=json
EXPOSE 2525 8025
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8025/healthz', timeout=4).status == 200 else 1)"
ENTRYPOINT ["suppression-gateway"]
CMD ["serve", "--config", "/etc/suppression-gateway/gateway.toml"]
