"""`python -m lorastack` runs the command line."""

from lorastack.cli import main

main()
