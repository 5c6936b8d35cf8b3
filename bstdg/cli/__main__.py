"""``python -m bstdg.cli``: the ``bstdg`` command."""

import sys

from . import main_cli

sys.exit(main_cli())
