"""The bundle's program: the ``vrfer`` command; with no arguments (a double-click) it opens the app."""
import sys

from vrfer.cli.main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["app"]))
