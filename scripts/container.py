"""
Build and run the images with podman on a machine without a Docker engine or
registry access (the container test uses this; so can you).

    python scripts/container.py build      # base (cached) + bootstrap + example gateway images
    python scripts/container.py podman ARGS  # podman with this project's configuration

What it does:
- installs podman, buildah, runc, debootstrap and tini from Debian's packages when missing (as root);
- configures podman for this kind of machine: runc (crun fails on hybrid cgroups),
  cgroupfs, a file events logger, vfs storage, fixed ulimits; all under a cache
  directory (BOOTSTRAP_PODMAN_CACHE, default /var/tmp/bootstrap-podman) kept between runs;
- builds a local base image (the stand-in for python:*-slim) with
  `debootstrap --variant=minbase bookworm` from the Debian mirror configured in /etc/apt/,
  plus Python, and imports it with `podman import` (once; cached);
- builds the Dockerfile with `--build-arg BASE_IMAGE=` that base, handing the build the
  host's CA bundle, pip index settings and apt proxy settings as build secrets
  (read here at run time; never written into the repository or an image layer).
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("BOOTSTRAP_PODMAN_CACHE", "/var/tmp/bootstrap-podman"))
BASE_IMAGE = "localhost/bootstrap-base:bookworm"
BOOTSTRAP_IMAGE = "localhost/bootstrap:test"
GATEWAY_IMAGE = "localhost/example-gateway:test"
PACKAGES = {"podman": "podman", "buildah": "buildah", "runc": "runc", "debootstrap": "debootstrap",
            "tini": "tini"}
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
"""


def ensure_tools() -> None:
    """Install the container tools from Debian's packages when they are missing."""
    missing = [pkg for tool, pkg in PACKAGES.items()
               if shutil.which(tool) is None and not Path(f"/usr/bin/{tool}").exists()]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(f"missing {', '.join(missing)}: install them (apt-get install {' '.join(missing)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing, "uidmap"],
                   check=True, env=env, capture_output=True)


def podman_env() -> dict[str, str]:
    """The environment podman runs with: this project's containers.conf and storage.conf."""
    CACHE.mkdir(parents=True, exist_ok=True)
    conf = CACHE / "containers.conf"
    storage = CACHE / "storage.conf"
    conf.write_text(CONTAINERS_CONF)
    storage.write_text(
        "[storage]\n"
        'driver = "vfs"\n'
        f'graphroot = "{CACHE / "storage"}"\n'
        f'runroot = "{CACHE / "run"}"\n'
    )
    return {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}


def podman(*args: str, check: bool = True, capture: bool = True, timeout: float | None = 900,
           input_bytes: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run podman with this project's configuration."""
    result = subprocess.run(["podman", *args], env=podman_env(), capture_output=capture, text=input_bytes is None,
                            timeout=timeout, check=False, input=input_bytes)
    if check and result.returncode != 0:
        out = result.stdout if isinstance(result.stdout, str) else ""
        err = result.stderr if isinstance(result.stderr, str) else ""
        raise RuntimeError(f"podman {' '.join(args[:3])}... exited {result.returncode}:\n{out[-3000:]}\n{err[-3000:]}")
    return result


@contextlib.contextmanager
def _cache_lock() -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def debian_mirror() -> str:
    """The Debian mirror /etc/apt/ points at (deb822 .sources files or sources.list)."""
    candidates: list[str] = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for block in path.read_text().split("\n\n"):
            if re.search(r"^Suites:.*\bbookworm\b", block, re.M) and "debian-security" not in block:
                match = re.search(r"^URIs:\s*(\S+)", block, re.M)
                if match:
                    candidates.append(match.group(1))
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        for line in listing.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                uri = next((p for p in parts[1:] if "://" in p), None)
                if uri:
                    candidates.append(uri)
    if not candidates:
        raise RuntimeError("no Debian mirror found in /etc/apt/sources.list(.d)")
    return candidates[0]


def ensure_base_image() -> str:
    """debootstrap a minimal bookworm with Python and import it (once; cached)."""
    with _cache_lock():
        if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
            return BASE_IMAGE
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            rootfs = Path(tmp) / "rootfs"
            subprocess.run(
                ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                 "bookworm", str(rootfs), debian_mirror()],
                check=True, capture_output=True, timeout=1800,
            )
            shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
            (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
            tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True)
            podman("import", "--change", 'CMD ["python3"]', "-", BASE_IMAGE, input_bytes=tar.stdout)
    return BASE_IMAGE


def host_ca_bundle() -> str | None:
    """The host's CA bundle (it trusts the HTTPS proxy's certificate authority)."""
    return next((p for p in CA_BUNDLES if Path(p).exists()), None)


def host_pip_conf(dest: Path) -> Path | None:
    """
    The host's pip index settings, as a pip.conf usable inside a build: remote
    indexes and trusted hosts only (local paths, constraints and the CA path are
    the host's; the CA itself goes in as its own secret).
    """
    result = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                            check=False)
    keep = {"index-url", "extra-index-url", "trusted-host", "timeout", "retries", "proxy"}
    values: dict[str, str] = {}
    for line in result.stdout.splitlines():
        match = re.match(r"^[^.]+\.([\w-]+)='(.*)'$", line.strip())
        if not match or match.group(1) not in keep:
            continue
        key, value = match.groups()
        if key.endswith("index-url"):
            urls = [u for u in value.split() if u.startswith(("http://", "https://"))]
            if not urls:
                continue
            value = " ".join(urls)
        values[key] = value
    for var, key in (("PIP_INDEX_URL", "index-url"), ("PIP_EXTRA_INDEX_URL", "extra-index-url"),
                     ("PIP_TRUSTED_HOST", "trusted-host")):
        if os.environ.get(var):
            values[key] = os.environ[var]
    if not values:
        return None
    parser = configparser.ConfigParser()
    parser["global"] = values
    with open(dest, "w") as fh:
        parser.write(fh)
    return dest


def host_apt_conf(dest: Path) -> Path | None:
    """The host's apt proxy and validity settings (a snapshot mirror needs Check-Valid-Until false)."""
    result = subprocess.run(["apt-config", "dump"], capture_output=True, text=True, check=False)
    wanted = re.compile(r"^Acquire::(https?::Proxy|Check-Valid-Until|Check-Date|https?::Verify-Peer)\b")
    lines = [line for line in result.stdout.splitlines() if wanted.match(line)]
    if not lines:
        return None
    dest.write_text("\n".join(lines) + "\n")
    return dest


def build_images() -> tuple[str, str]:
    """Build the bootstrap image and the example gateway image on the local base."""
    ensure_tools()
    base = ensure_base_image()
    with tempfile.TemporaryDirectory(prefix="bootstrap-build-") as tmp:
        secrets: list[str] = []
        ca = host_ca_bundle()
        if ca:
            secrets += ["--secret", f"id=ca,src={ca}"]
        pip_conf = host_pip_conf(Path(tmp) / "pip.conf")
        if pip_conf:
            secrets += ["--secret", f"id=pipconf,src={pip_conf}"]
        apt_conf = host_apt_conf(Path(tmp) / "apt.conf")
        if apt_conf:
            secrets += ["--secret", f"id=aptconf,src={apt_conf}"]
        podman("build", "--format", "docker", "--network", "host", "--layers",
               "--build-arg", f"BASE_IMAGE={base}", *secrets, "-t", BOOTSTRAP_IMAGE, str(REPO), timeout=1800)
    podman("build", "--format", "docker", "--network", "host", "--layers",
           "--build-arg", f"BOOTSTRAP_IMAGE={BOOTSTRAP_IMAGE}", "-t", GATEWAY_IMAGE,
           str(REPO / "examples" / "gateway"), timeout=1800)
    return BOOTSTRAP_IMAGE, GATEWAY_IMAGE


def main(argv: Sequence[str]) -> int:
    """Command line: build, or run podman with this project's configuration."""
    if list(argv[:1]) == ["build"]:
        for image in build_images():
            print(image)
        return 0
    if list(argv[:1]) == ["podman"]:
        return subprocess.run(["podman", *argv[1:]], env=podman_env(), check=False).returncode
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
