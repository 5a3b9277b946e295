"""Subcommands of the ``neuralcollapse`` command line, one module each."""
