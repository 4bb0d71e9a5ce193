"""
Build and run the images with podman on a machine without a Docker engine or
registry access (the container test uses this; so can you).

    python scripts/container.py build      # base (cached) + bootstrap + example gateway images
    python scripts/container.py build-all  # ... + the bundle, the Node base (cached), the Node gateway and
                                           #     examples/prisma-users (the users service)
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
  (read here at run time; never written into the repository or an image layer);
- makes the other registry images the tests need, as local stand-ins (cached):
  debootstrap minbase bullseye, bookworm and trixie without Python; a Node base
  (bookworm plus Node's official linux binary and npm, both from the npm registry,
  as node:20-bookworm-slim lays them out); a distroless-cc-like root filesystem
  (Debian's glibc, libgcc, libstdc++, libssl and certificates, no shell, no Python),
  each labelled with its glibc version; and builds the bundle (`--target bundle`),
  examples/node-gateway and examples/prisma-users on them.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from toolcache import ToolError, apt_install

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("BOOTSTRAP_PODMAN_CACHE", "/var/tmp/bootstrap-podman"))
BASE_IMAGE = "localhost/bootstrap-base:bookworm-slim"
BOOTSTRAP_IMAGE = "localhost/bootstrap:test"
GATEWAY_IMAGE = "localhost/example-gateway:test"
BUNDLE_IMAGE = "localhost/bootstrap-bundle:test"
NODE_GATEWAY_IMAGE = "localhost/node-gateway:test"
PRISMA_USERS_IMAGE = "localhost/prisma-users:test"  # examples/prisma-users: the users service (Prisma)
DEBIAN_IMAGE = "localhost/bootstrap-debian:{suite}-slim"  # debootstrap minbase, no Python
NODE_BASE_IMAGE = "localhost/bootstrap-node:20-bookworm"  # the stand-in for node:20-bookworm-slim
DISTROLESS_IMAGE = "localhost/bootstrap-distroless-cc:bookworm"  # the stand-in for gcr.io/distroless/cc-debian12
NODE_VERSION = "20.20.2"  # Node's official binary, from the npm registry's node-linux-<arch> package
NPM_VERSION = "10.8.2"  # the npm that Node 20 ships
GLIBC_LABEL = "org.bootstrap.glibc"
BASES = REPO / "tests" / "container" / "bases"
PACKAGES = {"podman": "podman", "buildah": "buildah", "runc": "runc", "debootstrap": "debootstrap",
            "tini": "tini"}
# What Debian's official "slim" images leave out (debuerreotype's dpkg path-exclude
# list), so that the local stand-ins weigh what the registry's images weigh; apt's
# lists are removed too, as those images do.
SLIM_DPKG_CFG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
"""
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
    if missing:
        apt_install([*missing, "uidmap"], f"missing {', '.join(missing)}")


def engine_problem() -> str | None:
    """Why podman cannot run containers here (None when it can), after installing it where this may."""
    try:
        ensure_tools()
    except ToolError as exc:
        return str(exc)
    result = podman("info", check=False, timeout=120)
    if result.returncode != 0:
        return (f"podman is installed but cannot run containers here (`podman info` exited {result.returncode}: "
                f"{(result.stderr or '').strip()[-800:]}); inside a container it needs a privileged one")
    return None


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


def glibc_of(root: Path) -> str:
    """The glibc version (`2.36`) of a Debian root filesystem, from dpkg's record of libc6."""
    records = [root / "var/lib/dpkg/status", *sorted((root / "var/lib/dpkg/status.d").glob("*"))]
    for record in records:
        if not record.is_file():
            continue
        for stanza in record.read_text(errors="replace").split("\n\n"):
            if re.search(r"^Package: libc6$", stanza, re.M):
                match = re.search(r"^Version: (\d+\.\d+)", stanza, re.M)
                if match:
                    return match.group(1)
    raise RuntimeError(f"no libc6 recorded under {root}/var/lib/dpkg")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def slim(rootfs: Path) -> None:
    """Trim a debootstrapped root filesystem as Debian's official slim images are trimmed."""
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(SLIM_DPKG_CFG)
    for folder in ("usr/share/doc", "usr/share/groff", "usr/share/info", "usr/share/linda",
                   "usr/share/lintian/overrides", "usr/share/locale", "usr/share/man"):
        for entry in sorted((rootfs / folder).glob("*")):
            if folder == "usr/share/doc" and (entry / "copyright").is_file():
                for inner in entry.iterdir():
                    if inner.name != "copyright":
                        _remove(inner)
            else:
                _remove(entry)
    for entry in (rootfs / "var/lib/apt/lists").glob("*"):
        if entry.is_file() and entry.name != "lock":
            entry.unlink()


def _debootstrap_image(suite: str, image: str, include: Sequence[str] = (), cmd: str = "bash",
                       env: dict[str, str] | None = None) -> str:
    """debootstrap a minimal Debian `suite` (plus `include`) and import it as `image` (once; cached)."""
    with _cache_lock():
        if podman("image", "exists", image, check=False).returncode == 0:
            return image
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            rootfs = Path(tmp) / "rootfs"
            extra = [f"--include={','.join(include)}"] if include else []
            subprocess.run(
                ["debootstrap", "--variant=minbase", *extra, suite, str(rootfs), debian_mirror()],
                check=True, capture_output=True, timeout=1800,
            )
            shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
            (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
            slim(rootfs)
            glibc = glibc_of(rootfs)
            tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True)
            changes = [f'CMD ["{cmd}"]', f"LABEL {GLIBC_LABEL}={glibc}",
                       *(f"ENV {key}={value}" for key, value in (env or {}).items())]
            podman("import", *(arg for change in changes for arg in ("--change", change)), "-", image,
                   input_bytes=tar.stdout)
    return image


def ensure_base_image() -> str:
    """debootstrap a minimal bookworm with Python and import it (once; cached)."""
    return _debootstrap_image("bookworm", BASE_IMAGE, ("python3", "python3-venv", "ca-certificates"), cmd="python3",
                              env={"LANG": "C.UTF-8"})  # as python:*-slim sets it


def ensure_debian_image(suite: str) -> str:
    """A minimal Debian `suite` without Python (bullseye, bookworm, trixie), as debootstrap makes it."""
    return _debootstrap_image(suite, DEBIAN_IMAGE.format(suite=suite))


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


@contextlib.contextmanager
def build_secrets() -> Iterator[list[str]]:
    """`--secret` arguments handing a build the host's CA bundle, pip and apt settings (files live only meanwhile)."""
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
        yield secrets


@contextlib.contextmanager
def build_volumes() -> Iterator[list[str]]:
    """
    `-v` arguments for building a Dockerfile that knows nothing of build secrets
    (a user's, as the README writes it): the host's CA bundle and pip settings,
    mounted read-only for every RUN step (as /etc/pip.conf) and never stored in a layer.
    """
    with tempfile.TemporaryDirectory(prefix="bootstrap-build-") as tmp:
        volumes: list[str] = []
        conf = configparser.ConfigParser()
        pip_conf = host_pip_conf(Path(tmp) / "host-pip.conf")
        if pip_conf:
            conf.read(pip_conf)
        ca = host_ca_bundle()
        if ca:
            volumes += ["-v", f"{ca}:/run/build-ca.crt:ro"]
            if not conf.has_section("global"):
                conf.add_section("global")
            conf["global"]["cert"] = "/run/build-ca.crt"
        if conf.sections():
            dest = Path(tmp) / "pip.conf"
            with open(dest, "w") as fh:
                conf.write(fh)
            volumes += ["-v", f"{dest}:/etc/pip.conf:ro"]
        yield volumes


def build(*args: str) -> None:
    """`podman build` as every image here is built (docker format, host network, cached layers)."""
    podman("build", "--format", "docker", "--network", "host", "--layers", *args, timeout=1800)


def build_images() -> tuple[str, str]:
    """Build the bootstrap image and the example gateway image on the local base."""
    ensure_tools()
    base = ensure_base_image()
    with build_secrets() as secrets:
        build("--build-arg", f"BASE_IMAGE={base}", *secrets, "-t", BOOTSTRAP_IMAGE, str(REPO))
    build("--build-arg", f"BOOTSTRAP_IMAGE={BOOTSTRAP_IMAGE}", "-f", str(REPO / "examples" / "gateway" / "Dockerfile"),
          "-t", GATEWAY_IMAGE, str(REPO))
    return BOOTSTRAP_IMAGE, GATEWAY_IMAGE


def build_bundle() -> str:
    """Build the bundle (`--target bundle`: an image holding only /opt/bootstrap) on the local base."""
    ensure_tools()
    base = ensure_base_image()
    with build_secrets() as secrets:
        build("--target", "bundle", "--build-arg", f"BASE_IMAGE={base}", *secrets, "-t", BUNDLE_IMAGE, str(REPO))
    return BUNDLE_IMAGE


def _npm_package(spec: str, dest: Path) -> Path:
    """Unpack an npm registry package (`name@version`) into `dest` (its `package/` folder), once."""
    unpacked = dest / spec.replace("/", "_")
    if (unpacked / "package" / "package.json").exists():
        return unpacked / "package"
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"npm is needed to fetch {spec} from the npm registry: apt-get install npm")
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        result = subprocess.run([npm, "pack", spec, "--pack-destination", tmp], capture_output=True, text=True,
                                check=False, timeout=900)
        if result.returncode != 0:
            raise RuntimeError(f"npm pack {spec} failed: {result.stderr.strip()[-800:]}")
        (tarball,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tarball) as archive:
            archive.extractall(Path(tmp) / "x", filter="data")
        shutil.rmtree(unpacked, ignore_errors=True)
        (Path(tmp) / "x").rename(unpacked)
    return unpacked / "package"


def ensure_node_base() -> str:
    """
    The stand-in for node:20-bookworm-slim: minimal bookworm (no Python) with Node's
    official linux binary (the npm registry's node-linux-<arch> package) and npm, at
    the official image's paths, and its `node` user (uid 1000). Once; cached.
    """
    debian = ensure_debian_image("bookworm")
    arch = {"x86_64": "x64", "aarch64": "arm64"}.get(platform.machine())
    if arch is None:
        raise RuntimeError(f"no Node binary package for {platform.machine()}")
    with _cache_lock():
        if podman("image", "exists", NODE_BASE_IMAGE, check=False).returncode == 0:
            return NODE_BASE_IMAGE
        context = CACHE / "node-base"
        context.mkdir(parents=True, exist_ok=True)
        node = _npm_package(f"node-linux-{arch}@{NODE_VERSION}", context)
        npm = _npm_package(f"npm@{NPM_VERSION}", context)
        build("-f", str(BASES / "node.Containerfile"), "--build-arg", f"DEBIAN_IMAGE={debian}",
              "--build-arg", f"NODE_DIR={node.relative_to(context)}",
              "--build-arg", f"NPM_DIR={npm.relative_to(context)}", "-t", NODE_BASE_IMAGE, str(context))
    return NODE_BASE_IMAGE


def ensure_distroless_image() -> str:
    """The stand-in for distroless cc (Debian 12): glibc, libgcc, libstdc++, libssl, certificates; no shell."""
    debian = ensure_debian_image("bookworm")
    with _cache_lock():
        if podman("image", "exists", DISTROLESS_IMAGE, check=False).returncode == 0:
            return DISTROLESS_IMAGE
        with build_secrets() as secrets:  # the same glibc as the bookworm it unpacks
            build("-f", str(BASES / "distroless-cc.Containerfile"), "--build-arg", f"DEBIAN_IMAGE={debian}",
                  "--label", f"{GLIBC_LABEL}={image_label(debian, GLIBC_LABEL)}", *secrets,
                  "-t", DISTROLESS_IMAGE, str(BASES))
    return DISTROLESS_IMAGE


def build_node_gateway(bundle: str | None = None) -> str:
    """Build examples/node-gateway on the Node stand-in with the bundle (built first unless given)."""
    bundle = bundle or build_bundle()
    node = ensure_node_base()
    with build_secrets() as secrets:
        build("-f", str(REPO / "examples" / "node-gateway" / "Dockerfile"), "--build-arg", f"NODE_IMAGE={node}",
              "--build-arg", f"BUNDLE_IMAGE={bundle}", *secrets, "-t", NODE_GATEWAY_IMAGE, str(REPO))
    return NODE_GATEWAY_IMAGE


def build_prisma_users(bundle: str | None = None) -> str:
    """Build examples/prisma-users (the users service) on the Node stand-in with the bundle (built unless given)."""
    bundle = bundle or build_bundle()
    node = ensure_node_base()
    with build_secrets() as secrets:
        build("-f", str(REPO / "examples" / "prisma-users" / "Dockerfile"), "--build-arg", f"NODE_IMAGE={node}",
              "--build-arg", f"BUNDLE_IMAGE={bundle}", *secrets, "-t", PRISMA_USERS_IMAGE, str(REPO))
    return PRISMA_USERS_IMAGE


def image_label(image: str, label: str) -> str:
    """A label of a local image."""
    return podman("image", "inspect", "--format", f'{{{{index .Labels "{label}"}}}}', image).stdout.strip()


def image_size(image: str) -> int:
    """A local image's size in bytes, uncompressed (all its layers)."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


def export_path(image: str, path: str, dest: Path) -> Path:
    """Copy `path` out of `image` into the folder `dest` (emptied first); returns the copy."""
    name = f"bootstrap-export-{os.getpid()}"
    podman("rm", "-f", name, check=False)
    podman("create", "--name", name, image, "/none")
    try:
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        podman("cp", f"{name}:{path}", str(dest))
    finally:
        podman("rm", "-f", name, check=False)
    return dest / Path(path).name


def main(argv: Sequence[str]) -> int:
    """Command line: build, or run podman with this project's configuration."""
    if list(argv[:1]) == ["build"]:
        for image in build_images():
            print(image)
        return 0
    if list(argv[:1]) == ["build-all"]:
        bundle = build_bundle()
        for image in (*build_images(), build_node_gateway(bundle), build_prisma_users(bundle)):
            print(image)
        return 0
    if list(argv[:1]) == ["podman"]:
        return subprocess.run(["podman", *argv[1:]], env=podman_env(), check=False).returncode
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
