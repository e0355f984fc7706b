"""Subcommands of the ``rtha`` CLI (see :mod:`rtha.cli`)."""
