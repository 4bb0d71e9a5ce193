"""
The console script. `bootstrap --version` answers before any library is
loaded; everything else goes to the CLI.
"""

from __future__ import annotations

import sys


def main() -> None:
    """`bootstrap` on the command line."""
    if sys.argv[1:] in (["--version"], ["-V"]):
        from . import __version__

        sys.stdout.write(f"bootstrap {__version__}\n")
        sys.exit(0)
    from .cli import main as cli_main

    cli_main(fast_exit=True)
