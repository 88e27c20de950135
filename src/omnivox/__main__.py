"""``python -m omnivox`` is the ``omnivox`` command."""

import sys

from omnivox.cli import main

sys.exit(main())
