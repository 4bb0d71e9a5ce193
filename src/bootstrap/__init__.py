"""
bootstrap: wait for PostgreSQL, migrate exactly once, exec the app.

The command line is the product (`bootstrap --help`); this package's modules
are its implementation. Only the version is public here.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
