"""``python -m aubench`` runs the command line."""

import sys

from aubench.cli import main

sys.exit(main())
