"""`python -m runtime`: the p4tas slow-path daemon; `python -m runtime flows`: its connections."""

import sys

if sys.argv[1:2] == ["flows"]:
    from runtime.flows_cli import main as flows_main
    sys.exit(flows_main(sys.argv[2:]))

from runtime.daemon import main  # noqa: E402 - the daemon's imports are not needed by `flows`

sys.exit(main())
