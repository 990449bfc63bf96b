"""The `lorastack` command line: an entry point, imported by nothing else."""

from lorastack.cli.app import app, main

__all__ = ["app", "main"]
