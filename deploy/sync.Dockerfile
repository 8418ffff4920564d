# The labelplan sync service (and CLI). No model libraries: it asks the backend over HTTP.
# Build from the repository root:  docker build -f deploy/sync.Dockerfile -t labelplan-sync .
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY plugin ./plugin
COPY backend ./backend
RUN pip install ".[postgres]" \
    && groupadd --system --gid 10001 labelplan \
    && useradd --system --uid 10001 --gid labelplan --home-dir /app --shell /usr/sbin/nologin labelplan

USER 10001:10001
EXPOSE 8765
ENTRYPOINT []
CMD ["labelplan", "--help"]
