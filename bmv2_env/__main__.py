"""`python -m bmv2_env`: the p4tas-env command line (bmv2_env.cli)."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
