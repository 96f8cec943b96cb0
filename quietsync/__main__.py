"""``python -m quietsync``: the same as the ``quietsync`` command."""

import sys

from quietsync.cli import main

sys.exit(main())
