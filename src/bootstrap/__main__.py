"""`python -m bootstrap` runs the command line."""

from bootstrap._entry import main

if __name__ == "__main__":
    main()
