"""`python -m hub_gateway`: the same as the `hub-gateway` command."""

import sys

from .cli import main

sys.exit(main())
