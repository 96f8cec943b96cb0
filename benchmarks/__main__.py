"""``python -m benchmarks``: the scenario suite (see `benchmarks.suite`)."""

import sys

from benchmarks.suite import main

sys.exit(main())
