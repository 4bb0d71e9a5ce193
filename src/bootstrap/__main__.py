"""`python -m bootstrap` runs the command line."""

from bootstrap.cli import main

if __name__ == "__main__":
    main()
