# SageMaker-compatible Factorization Machines / WALS image.
#   docker run IMAGE train    (reads /opt/ml/input, writes /opt/ml/model and /opt/ml/output)
#   docker run IMAGE serve    (nginx on :8080 in front of gunicorn, GET /ping, POST /invocations)
#   docker run IMAGE          (no command: entrypoint.sh trains, serves or says what to pass; docs/image.md)
#
# Real users build from the public Python image:
#   docker build -t fm-wals:latest .
# Machines that cannot pull from a registry build from a local Debian base (make base-image):
#   docker build --network host --build-arg BASE_IMAGE=fm-wals-base:bookworm -t fm-wals:latest .
# Both bases are Debian bookworm with Python 3.11; everything below works on either.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true \
      org.opencontainers.image.title="fm-wals" \
      org.opencontainers.image.description="SageMaker-compatible Factorization Machines and WALS (train + serve)" \
      org.opencontainers.image.licenses="Apache-2.0"

# /opt/venv: Debian's python3 refuses `pip install` into the system (PEP 668) and may have no `python`;
# a venv gives `python` and `gunicorn` on PATH on both bases (its pip is removed once the install is done).
# NUMBA_CACHE_DIR holds the kernels compiled at build time (see docs/image.md for the CPU-model choice).
# OPENBLAS_NUM_THREADS=1: WALS's cg solver calls BLAS from inside numba's threads; nested BLAS threads oversubscribe.
# OMP_WAIT_POLICY=passive: numba's OpenMP threads sleep at the per-batch barriers of the deterministic FM kernel
# instead of spinning (CTR k=8, 2 threads: 1.6-1.8 s/epoch, 2.0-2.6 s spinning; docs/benchmarks.md, "FM threads").
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/program \
    NUMBA_CACHE_DIR=/opt/numba-cache \
    OPENBLAS_NUM_THREADS=1 \
    OMP_WAIT_POLICY=passive

# Runtime dependencies only (requirements.txt), in their own layer so code changes don't reinstall them.
# In the same RUN (so no layer keeps them): drop the libraries' test suites (~65 MB), their type stubs and
# C/Cython sources (~8 MB; numba keeps its own) and pip/setuptools (~22 MB), which the running image never uses.
# Bytecode stays: it makes the first import faster.
COPY requirements.txt /opt/program/requirements.txt
RUN python3 -m venv /opt/venv \
 && pip install --no-cache-dir -r /opt/program/requirements.txt \
 && find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
 && find /opt/venv/lib -type f -path '*/site-packages/*' -not -path '*/numba/*' \
        \( -name '*.pyi' -o -name '*.pxd' -o -name '*.pyx' -o -name '*.h' -o -name '*.c' \) -delete \
 && python -m pip uninstall -y -q pip setuptools \
 && rm -rf /root/.cache /tmp/*

# Debian's nginx: `serve` puts it in front of gunicorn, reading whole requests with client timeouts, so slow or
# stalled clients never hold a gunicorn thread (serve/nginx.conf). Its own service files and logs are not used.
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log /etc/nginx/sites-enabled/*

# The program. `train` and `serve` are what SageMaker passes as the container command; the entry point execs
# it (no shell left running): train is a Python script, serve.sh supervises nginx and gunicorn; each is PID 1
# and handles SIGTERM.
# pyproject.toml beside the packages gives the version model.json records (algorithm.artifact.package_version).
COPY algorithm /opt/program/algorithm
COPY container /opt/program/container
COPY serve /opt/program/serve
COPY train pyproject.toml /opt/program/
RUN chmod 0755 /opt/program/train \
 && ln -sf /opt/program/train /usr/local/bin/train \
 && ln -sf /opt/program/serve.sh /usr/local/bin/serve \
 && python -m compileall -q /opt/program \
 && mkdir -p "$NUMBA_CACHE_DIR" \
 && cd /opt/program && python -m container.warmup \
 && rm -rf /opt/ml /tmp/* /root/.cache

# After the warmup, so that editing them does not recompile the kernels (both are executable in git). No default
# command: entrypoint.sh chooses when given none (SDK 3.x local training passes none) and says what to pass when
# it cannot.
COPY serve.sh entrypoint.sh /opt/program/
WORKDIR /opt/program
EXPOSE 8080
ENTRYPOINT ["/opt/program/entrypoint.sh"]
CMD []
