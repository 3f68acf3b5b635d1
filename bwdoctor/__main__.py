"""``python -m bwdoctor``: the same entry point as the ``bwdoctor`` command."""

import sys

from bwdoctor.cli import main

sys.exit(main())
