"""
The Kubernetes examples are valid objects: every document of examples/kubernetes/*.yaml is checked
offline against the official schemas of pinned Kubernetes versions, strictly (a misspelt or unknown
field is an error, as `kubectl apply --validate=strict` would say).

The schemas come inside the kubernetes-validate wheel (pinned in pyproject.toml's test group), one
set per Kubernetes minor: nothing is downloaded while the tests run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO

EXAMPLES = REPO / "examples" / "kubernetes"
# The oldest Kubernetes the examples are written for (every field they use is GA there: the fleet
# Job's podFailurePolicy since 1.31), and the newest whose schemas the pinned package carries.
KUBERNETES_VERSIONS = ("1.31", "1.37")
INSTALL = ("install the locked test dependencies: ./scripts/test does, or "
           ".venv/bin/pip install --require-hashes --no-deps -r requirements/dev.txt")


def manifests() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yaml")) + sorted(EXAMPLES.glob("*.yml"))


def documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of one file (empty ones left out)."""
    try:
        import yaml
    except ImportError:
        pytest.fail(f"PyYAML is not installed (kubernetes-validate brings it): {INSTALL}", pytrace=False)
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def problems(doc: dict[str, Any], version: str) -> str | None:
    """Why `doc` is not a valid object of Kubernetes `version` (strict schemas), or None."""
    try:
        from kubernetes_validate.utils import SchemaNotFoundError, ValidationError, validate
    except ImportError:
        pytest.fail(f"kubernetes-validate is not installed: {INSTALL}", pytrace=False)
    try:
        validate(doc, version, strict=True)
    except ValidationError as exc:
        return f"{'.'.join(str(p) for p in exc.path) or '(top)'}: {exc.message}"
    except SchemaNotFoundError as exc:  # an unknown kind or apiVersion: the package only warns about it
        return exc.message
    return None


def test_there_are_examples_to_check() -> None:
    """The glob finds the manifests (a moved folder must not make the checks below vacuous)."""
    names = {p.name for p in manifests()}
    assert {"deployment.yaml", "migrate-job.yaml", "fleet-job.yaml"} <= names


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifests(), ids=lambda p: p.name)
def test_manifest_is_valid(path: Path, version: str) -> None:
    """Each document of the file is a valid object of that Kubernetes version."""
    docs = documents(path)
    assert docs, f"{path.name}: no YAML document"
    found = [f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {problem}"
             for doc in docs if (problem := problems(doc, version)) is not None]
    assert [] == found


def test_the_fleet_job_runs_several_pods_over_the_fleet() -> None:
    """fleet-job.yaml shares the fleet between pods: parallelism > 1, each with the tenants query and --jobs."""
    (job,) = documents(EXAMPLES / "fleet-job.yaml")
    spec = job["spec"]
    assert spec["parallelism"] > 1 and spec["completions"] == spec["parallelism"]
    assert spec["completionMode"] == "Indexed"
    (container,) = spec["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BOOTSTRAP_TENANTS_QUERY"] and int(env["BOOTSTRAP_JOBS"]) >= 1
    assert "BOOTSTRAP_DATABASE_URL_FILE" in env and "BOOTSTRAP_DATABASE_URL" not in env
