"""lorastack: business-domain LLM assistants on hot-swapped LoRA adapters.

This folder holds what every component shares: settings, the adapter manifest
and registry, the base-model store, and the `lorastack` command line.
"""

__version__ = "0.1.0"
