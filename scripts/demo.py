"""
The main job end to end, as a container would run it:

1. `bootstrap run -- python examples/gateway/server.py`: wait for PostgreSQL,
   create the schema, apply sql/, verify, then exec the example gateway
   (same PID);
2. seed a global row and an encrypted user row, and GET them back from the gateway;
3. SIGTERM the PID that was started: the gateway itself handles it and exits 0;
4. start again: nothing to apply, `status --exit-code` says up to date.

DATABASE_URL must be set (scripts/demo starts a throwaway PostgreSQL when it is not).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
from pgcluster import free_port  # noqa: E402


def say(text: str) -> None:
    """A demo line, on stderr next to bootstrap's logs."""
    print(f"\033[1mdemo:\033[0m {text}" if sys.stderr.isatty() else f"demo: {text}", file=sys.stderr, flush=True)


def main() -> int:
    """Run the demo; exit non-zero if any step does not hold."""
    port = free_port()
    env = {**os.environ, "PORT": str(port)}
    say(f"bootstrap run -- python examples/gateway/server.py   (gateway on port {port})")
    gateway = subprocess.Popen(["bootstrap", "run", "--", sys.executable, "examples/gateway/server.py"],
                               cwd=REPO, env=env)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                break
        except OSError:
            if gateway.poll() is not None:
                say(f"bootstrap exited {gateway.returncode} before the gateway answered")
                return gateway.returncode or 1
            if time.monotonic() > deadline:
                say("the gateway did not answer within 120 s")
                gateway.kill()
                return 1
            time.sleep(0.1)
    say("the gateway answers /healthz: bootstrap waited, migrated, verified and exec'd it")

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO financial.integration_configs (integration_type, config_key, config_value, description)"
            " VALUES ('stripe', 'api_url', 'https://api.stripe.com', 'demo global row')"
            " ON CONFLICT DO NOTHING")
        conn.execute(
            "INSERT INTO financial.integration_configs (user_id, integration_type, config_key, config_value,"
            " is_encrypted) VALUES ('6f1c1b9e-0000-4000-8000-000000000001', 'stripe', 'secret_key',"
            " 'sk_demo_secret', true) ON CONFLICT DO NOTHING")
    url = f"http://127.0.0.1:{port}/api/integrations/configs?integration_type=stripe"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    say(f"GET {url}")
    print(json.dumps(body, indent=2))
    values = {r["config_key"]: r["config_value"] for r in body["configs"]}
    if values.get("api_url") != "https://api.stripe.com" or values.get("secret_key") is not None:
        say("unexpected answer")
        gateway.kill()
        return 1

    say(f"SIGTERM to PID {gateway.pid} (the PID started as bootstrap, now the gateway)")
    gateway.send_signal(signal.SIGTERM)
    code = gateway.wait(30)
    say(f"the gateway exited {code}")

    say("second start: bootstrap run -- bootstrap status --exit-code")
    return subprocess.run(["bootstrap", "run", "--", "bootstrap", "status", "--exit-code"], cwd=REPO,
                          env=os.environ, check=False).returncode or code


if __name__ == "__main__":
    sys.exit(main())
