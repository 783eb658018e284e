"""``python -m sre_agent`` is the ``sre-agent`` command."""

import sys

from .cli import main

sys.exit(main())
