"""`python -m runtime`: the p4tas slow-path daemon."""

import sys

from runtime.daemon import main

sys.exit(main())
