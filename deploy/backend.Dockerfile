# The labelplan ML backend: gunicorn serving backend/_wsgi.py (label-studio-ml's layout).
# Build from the repository root:  docker build -f deploy/backend.Dockerfile -t labelplan-backend .
FROM python:3.11.10-slim-bookworm

# torch's CPU wheels: the default index would pull the CUDA build (several GB) for nothing.
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL} \
    PORT=9090 \
    WORKERS=1 \
    THREADS=8 \
    MODEL_DIR=/models

WORKDIR /app
COPY pyproject.toml README.md ./
COPY plugin ./plugin
COPY backend ./backend
RUN pip install ".[backend,postgres]" \
    && groupadd --system --gid 10001 labelplan \
    && useradd --system --uid 10001 --gid labelplan --home-dir /app --shell /usr/sbin/nologin labelplan \
    && mkdir -p /models && chown labelplan:labelplan /models

USER 10001:10001
EXPOSE 9090
CMD ["gunicorn", "--chdir", "/app/backend", "-c", "/app/backend/gunicorn.conf.py", "_wsgi:app"]
