"""
The self-contained bundle (`docker build --target bundle`) and the Node gateway
that uses it, built and run for real with podman: what the bundle holds, the glibc
it needs (computed from its ELF files, then checked by running it on Debian 11, 12,
13 and a distroless-cc stand-in), no Python in the Node image, the Node gateway
answering as the Python example does, and the image sizes the docs publish.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import bundle
import container
from pgcluster import free_port
from tests.container.containers import APP_PASSWORD, MIGRATOR_PASSWORD, Base, superuser_url, url
from tests.helpers import REPO, ledger, poll, repo_versions

pytestmark = pytest.mark.container

DOCS = REPO / "docs" / "container.md"
MB = 1_000_000


def glibc_floor(bundle_dir: Path) -> tuple[str, Path]:
    """`2.35`, and the file that needs it."""
    (major, minor), path = bundle.glibc_floor(bundle_dir)
    return f"{major}.{minor}", path


def test_bundle_image_holds_only_opt_bootstrap(bundle_image: str, tmp_path: Path) -> None:
    """The bundle image is one layer holding /opt/bootstrap and nothing else."""
    archive = tmp_path / "bundle.tar"
    container.podman("save", "--format", "docker-archive", "-o", str(archive), bundle_image)
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        (layer,) = manifest[0]["Layers"]
        with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
            tops = {name.lstrip("./").split("/")[0] for name in inner.getnames()} - {""}
            below_opt = {name.lstrip("./").split("/")[1] for name in inner.getnames()
                         if name.lstrip("./").count("/") >= 1}
    assert ({"opt"}, {"bootstrap"}) == (tops, below_opt)


def test_bundle_layout(bundle_dir: Path) -> None:
    """bin/ holds the entry executable, its own interpreter and a static tini; the bundle is well under 50 MB."""
    entry = (bundle_dir / "bin" / "bootstrap").read_text()
    assert entry.startswith("#!/opt/bootstrap/bin/python3 -IS\n")
    for name in ("bootstrap", "python3", "tini"):
        assert (bundle_dir / "bin" / name).stat().st_mode & 0o111, name
    assert set() == bundle.glibc_versions(bundle_dir / "bin" / "tini")  # static: needs nothing
    size = sum(p.stat().st_size for p in bundle_dir.rglob("*") if p.is_file() and not p.is_symlink())
    assert size < 45 * MB, f"{size / MB:.1f} MB"


def test_glibc_floor_is_the_documented_one(bundle_dir: Path) -> None:
    """The highest GLIBC_x.y any ELF file of the bundle needs is the floor docs/container.md states."""
    floor, path = glibc_floor(bundle_dir)
    stated = re.search(r"<!-- glibc-floor -->\s*\*\*glibc (\d+\.\d+)\*\*", DOCS.read_text())
    assert stated, "docs/container.md states no glibc floor"
    assert floor == stated.group(1), f"{path.relative_to(bundle_dir)} needs GLIBC_{floor}"


@pytest.mark.parametrize("base", ["bullseye", "bookworm", "trixie", "distroless-cc"])
def test_bundle_runs_where_its_glibc_floor_says(base: str, bundle_bases: dict[str, Base], bundle_dir: Path,
                                                fresh_db: str, pg_base_dsn: str, db: psycopg.Connection) -> None:
    """
    Copied into a bare Debian 11, 12, 13 or a distroless-cc root filesystem (no
    Python; no shell in distroless), the bundle migrates when the image's glibc
    is at least its floor; below it, the loader refuses before anything runs.
    """
    image = bundle_bases[base]
    floor, _path = glibc_floor(bundle_dir)
    result = container.podman(
        "run", "--rm", "--network", "host", "-v", f"{bundle_dir}:/opt/bootstrap:ro", "-v", f"{REPO / 'sql'}:/app/sql:ro",
        "-e", f"DATABASE_URL={superuser_url(pg_base_dsn, fresh_db)}", "-e", "BOOTSTRAP_SQL_DIR=/app/sql",
        "--entrypoint", "/opt/bootstrap/bin/tini", image.image, "--", "/opt/bootstrap/bin/bootstrap", "migrate",
        check=False)
    if image.glibc >= tuple(int(n) for n in floor.split(".")):
        assert 0 == result.returncode, result.stderr
        assert repo_versions() == [row[0] for row in ledger(db)]
    else:
        missing = {tuple(int(n) for n in v) for v in re.findall(r"GLIBC_(\d+)\.(\d+)' not found", result.stderr)}
        assert 0 != result.returncode
        assert missing and min(missing) > image.glibc, result.stderr
        assert (None,) == db.execute("SELECT to_regclass('bootstrap.bootstrap_migrations')").fetchone()


def test_distroless_stand_in_has_no_shell_and_no_python(bundle_bases: dict[str, Base], tmp_path: Path) -> None:
    """The distroless-cc stand-in holds glibc and its companions, and no shell, package manager or Python."""
    name = f"bootstrap-distroless-{uuid.uuid4().hex[:8]}"
    container.podman("create", "--name", name, bundle_bases["distroless-cc"].image, "/none")
    try:
        container.podman("export", "-o", str(tmp_path / "rootfs.tar"), name)
    finally:
        container.podman("rm", "-f", name, check=False)
    with tarfile.open(tmp_path / "rootfs.tar") as rootfs:
        names = [n.lstrip("./") for n in rootfs.getnames()]
    assert [n for n in names if n.endswith("/libc.so.6")], "no glibc"
    programs = r"(^|/)s?bin/(\w*sh|apt[\w-]*|dpkg[\w-]*|python[\d.]*)$|libpython"
    assert [] == [n for n in names if re.search(programs, n)]


def test_node_image_has_no_python(node_gateway_image: str) -> None:
    """No python3 on the Node gateway image's PATH, and no Python anywhere outside /opt/bootstrap."""
    script = ("command -v python3 python || true; "
              "find / -xdev \\( -name 'python3*' -o -name 'libpython*' \\) -not -path '/opt/bootstrap/*' -print")
    result = container.podman("run", "--rm", "--user", "0", "--entrypoint", "/bin/sh", node_gateway_image, "-c", script)
    assert "" == result.stdout.strip()


def test_node_gateway_answers_as_the_python_example(node_gateway_image: str, start, roles: dict[str, str],
                                                    pg_base_dsn: str) -> None:
    """For every filter, the Node gateway returns the same JSON as examples/gateway/server.py on the same rows."""
    app_url = url(pg_base_dsn, roles["dbname"], roles["app"], APP_PASSWORD)
    node_port, python_port = free_port(), free_port()
    node = start(node_gateway_image, env={"DATABASE_URL": app_url, "PORT": str(node_port), "BOOTSTRAP_DATABASE_URL":
                                          url(pg_base_dsn, roles["dbname"], roles["migrator"], MIGRATOR_PASSWORD)})
    python = subprocess.Popen([sys.executable, str(REPO / "examples" / "gateway" / "server.py")],
                              env={"PATH": "/usr/bin:/bin", "DATABASE_URL": app_url, "PORT": str(python_port)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def get(port: int, query: str) -> tuple[int, object]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/integrations/configs{query}",
                                            timeout=5) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        def up(port: int) -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    return True
            except OSError:
                assert node.state()["Running"], node.logs()
                return False

        poll(lambda: up(node_port) and up(python_port), timeout=120, interval=0.2, message="both gateways to answer")
        with psycopg.connect(make_conninfo(pg_base_dsn, dbname=roles["dbname"]), autocommit=True) as conn:
            conn.execute("""
                INSERT INTO financial.integration_configs (user_id, integration_type, config_key, config_value,
                                                           is_encrypted, description, metadata) VALUES
                  (NULL, 'stripe', 'api_url', 'https://api.stripe.test', false, 'Stripe API', '{"tier": 1}'),
                  (NULL, 'slack', 'webhook', 'https://hooks.slack.test/x', true, NULL, '{}'),
                  ('66666666-6666-4666-8666-666666666666', 'stripe', 'secret_key', 'sk_live_DO_NOT_SHOW', true,
                   NULL, '{"rotated": ["2026-01-01"]}'),
                  ('77777777-7777-4777-8777-777777777777', 'stripe', 'account', 'acct_123', false, 'the account',
                   '{}')""")
        queries = ["", "?integration_type=stripe", "?user_id=global", "?user_id=global&integration_type=slack",
                   "?user_id=66666666-6666-4666-8666-666666666666", "?user_id=77777777777747778777777777777777",
                   "?user_id=not-a-uuid", "?integration_type=none"]
        for query in queries:
            assert get(python_port, query) == get(node_port, query), query
        status, body = get(node_port, "")
        assert 200 == status and 4 == len(body["configs"])  # type: ignore[index]
        assert b"sk_live_DO_NOT_SHOW" not in json.dumps(body).encode()
        assert b"hooks.slack.test" not in json.dumps(body).encode()
    finally:
        python.terminate()
        python.wait(timeout=10)


def test_the_bundle_adds_only_itself_to_an_app_image(images: tuple[str, str], bundle_image: str,
                                                     node_gateway_image: str, prisma_users_image: str) -> None:
    """
    What a user pays in image size for bootstrap: the bundle stays under 45 MB, and an
    app image built on it is its base, the bundle and the app's own files, nothing
    else (the Node gateway's app is a few MB). The sizes of one run are printed for
    docs/container.md, which quotes them with their date.
    """
    sizes = {
        "bootstrap image": container.image_size(images[0]),
        "bundle": container.image_size(bundle_image),
        "Python gateway image": container.image_size(images[1]),
        "Node gateway image": container.image_size(node_gateway_image),
        "Prisma users service image": container.image_size(prisma_users_image),
        "Node base (stand-in)": container.image_size(container.ensure_node_base()),
        "Python base (stand-in)": container.image_size(container.ensure_base_image()),
    }
    print("\n".join(f"{name}: {size / MB:.0f} MB" for name, size in sizes.items()))
    assert sizes["bundle"] < 45 * MB
    app = sizes["Node gateway image"] - sizes["Node base (stand-in)"] - sizes["bundle"]
    assert 0 <= app < 10 * MB, f"the Node gateway image holds {app / MB:.0f} MB besides its base and the bundle"
