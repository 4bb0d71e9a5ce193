"""The README's first command works: the main job end to end on a throwaway PostgreSQL."""

from __future__ import annotations

import subprocess

from tests.helpers import REPO, clean_env


def test_demo_runs_end_to_end() -> None:
    """scripts/demo starts its own PostgreSQL, and the gateway serves the seeded rows."""
    result = subprocess.run([str(REPO / "scripts" / "demo")], cwd=REPO, env=clean_env(), capture_output=True,
                            text=True, timeout=600, check=False)
    assert 0 == result.returncode, result.stderr[-3000:]
    assert '"config_value": "https://api.stripe.com"' in result.stdout
    assert "sk_demo_secret" not in result.stdout + result.stderr
    assert "the gateway exited 0" in result.stderr
    assert "(up to date)" in result.stdout
    assert "throwaway PostgreSQL removed" in result.stderr
