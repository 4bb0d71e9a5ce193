# syntax=docker/dockerfile:1
# bootstrap as an image's ENTRYPOINT: tini (PID 1) -> entrypoint.py -> bootstrap -> exec your app.
#
#   docker build -t bootstrap .
#   docker run --rm -e DATABASE_URL=... bootstrap wait-db
#   docker run --rm -e DATABASE_URL=... -v "$PWD/sql:/app/sql:ro" bootstrap migrate   (the image holds no migrations)
#   docker run --rm -e DATABASE_URL=... my-app-image node server.js   (FROM bootstrap, see README)
#
# The self-contained bundle for images without Python (docs/container.md):
#   docker build --target bundle -t bootstrap-bundle .      (an image holding only /opt/bootstrap)
#   COPY --from=bootstrap-bundle /opt/bootstrap /opt/bootstrap  (in any glibc-based image)
#   ENTRYPOINT ["/opt/bootstrap/bin/tini", "--", "/opt/bootstrap/bin/bootstrap"]
#
# Behind a TLS-intercepting proxy, pass its CA bundle and pip settings as build
# secrets; they are mounted for one step only and never stored in a layer:
#   docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt \
#                --secret id=pipconf,src=/etc/pip.conf --secret id=aptconf,src=/etc/apt/apt.conf.d/proxy .

ARG BASE_IMAGE=python:3.12-slim-bookworm

# --- build: a virtual environment with bootstrap and its dependencies, bytecode
# compiled; tini for the runtime stage, patchelf, tini-static and Debian 11's libexpat
# (in /opt/compat) for the bundle
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /opt/compat
RUN --mount=type=secret,id=ca --mount=type=secret,id=aptconf \
    if [ -s /run/secrets/ca ]; then \
        echo 'Acquire::https::CaInfo "/run/secrets/ca";' > /etc/apt/apt.conf.d/99build-ca; \
    fi; \
    if [ -s /run/secrets/aptconf ]; then cp /run/secrets/aptconf /etc/apt/apt.conf.d/99build-host; fi; \
    apt-get update \
    && apt-get install -y --no-install-recommends patchelf=0.14.* tini=0.19.* \
    && echo "deb http://deb.debian.org/debian bullseye main" > /etc/apt/sources.list.d/bundle-expat.list \
    && apt-get update -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/bundle-expat.list -o Dir::Etc::sourceparts=- \
    && apt-get download libexpat1/bullseye \
    && dpkg-deb -x libexpat1_*.deb root && rm libexpat1_*.deb \
    && rm -rf /var/lib/apt/lists/* /etc/apt/sources.list.d/bundle-expat.list \
              /etc/apt/apt.conf.d/99build-ca /etc/apt/apt.conf.d/99build-host
WORKDIR /
# Everything pip installs is pinned with its hashes (requirements/*.txt, ./scripts/lock):
# the dependencies with the lint extra (squawk) first (a layer that changes only with the
# lock), then bootstrap's wheel,
# built with the locked build backend in a venv of its own (/opt/build) that no image keeps.
RUN python3 -m venv /opt/bootstrap && python3 -m venv /opt/build
COPY requirements/runtime.txt requirements/build.txt /src/requirements/
RUN --mount=type=secret,id=ca --mount=type=secret,id=pipconf \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    if [ -s /run/secrets/pipconf ]; then export PIP_CONFIG_FILE=/run/secrets/pipconf; fi; \
    /opt/bootstrap/bin/pip install --no-compile --require-hashes --no-deps -r /src/requirements/runtime.txt \
    && /opt/build/bin/pip install --require-hashes --no-deps -r /src/requirements/build.txt
COPY pyproject.toml README.md /src/
COPY src/ /src/src/
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist /src \
    && /opt/bootstrap/bin/pip install --no-compile --no-deps --no-index /tmp/dist/bootstrap-*.whl \
    && /opt/bootstrap/bin/python -m compileall -q -j 0 /opt/bootstrap/lib
# With the lint extra: squawk, one static binary, in /opt/bootstrap/bin (the image's; the bundle
# below copies site-packages only and leaves it out).
# pip and setuptools installed bootstrap; nothing at run time needs them (25 MB).
RUN /opt/bootstrap/bin/python -m pip uninstall --yes --quiet pip setuptools

# --- bundle-build: /opt/bootstrap made self-contained from the venv above: this
# stage's CPython (relocatable: RUNPATH $ORIGIN, bytecode only), the shared
# libraries it needs but glibc, bootstrap and its libraries, tini-static, and the
# entry executable bin/bootstrap (scripts/bundle.py)
FROM build AS bundle-build
COPY entrypoint.py /src/entrypoint.py
COPY scripts/bundle.py /src/scripts/bundle.py
# Debian 11's libexpat (2.2.10, ABI-compatible; needs glibc 2.25) instead of Debian 12's, whose
# arc4random_buf alone would raise the bundle's glibc floor to 2.36 and leave out Ubuntu 22.04.
# CPython links libexpat at start; bootstrap never parses XML (docs/container.md, the glibc floor).
RUN /opt/bootstrap/bin/python /src/scripts/bundle.py --venv /opt/bootstrap --out /bundle \
        --prefix /opt/bootstrap --tini /usr/bin/tini-static \
        --lib "libexpat.so.1=$(echo /opt/compat/root/lib/*/libexpat.so.1)"

# --- bundle: an image holding only /opt/bootstrap, for `COPY --from=` into any glibc-based image
FROM scratch AS bundle
COPY --from=bundle-build /bundle /opt/bootstrap

# --- runtime: the base image, tini, a non-root user and bootstrap. No migrations: an app's image
# built FROM this one copies its own sql/ into /app/sql (BOOTSTRAP_SQL_DIR), nothing merges with it.
FROM ${BASE_IMAGE}
RUN groupadd --system --gid 10001 bootstrap \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
               --shell /usr/sbin/nologin bootstrap
COPY --from=build /usr/bin/tini /usr/bin/tini
COPY --from=build /opt/bootstrap /opt/bootstrap
COPY entrypoint.py /app/entrypoint.py
WORKDIR /app
ENV PATH=/opt/bootstrap/bin:$PATH \
    BOOTSTRAP_SQL_DIR=/app/sql \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
# tini is PID 1: it forwards signals to the app (which bootstrap execs into) and
# reaps orphaned children, so an app without a SIGTERM handler still stops.
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/bootstrap/bin/python", "/app/entrypoint.py"]
CMD ["--help"]
