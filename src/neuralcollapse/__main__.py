"""``python -m neuralcollapse`` runs the command line (also under torchrun)."""

import sys

from neuralcollapse.cli import main

sys.exit(main())
