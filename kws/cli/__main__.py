"""``python -m kws.cli`` runs the command line, as ``python -m kws`` does."""

import sys

from kws.cli import main

sys.exit(main())
