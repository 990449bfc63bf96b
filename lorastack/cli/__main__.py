"""`python -m lorastack.cli` runs the command line."""

from lorastack.cli import main

main()
