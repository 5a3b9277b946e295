"""``python -m neuralcollapse`` runs the command line (also under torchrun)."""

import sys

from neuralcollapse.cli import main

if __name__ == "__main__":
    sys.exit(main())
