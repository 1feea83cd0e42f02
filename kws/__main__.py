"""``python -m kws`` runs the command line."""

import sys

from kws.cli import main

sys.exit(main())
