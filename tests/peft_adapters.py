"""Real PEFT LoRA adapters for the bundled model, made on the spot for integration tests.

The writer lives in the package (the benchmark needs it at run time); tests import it here.
"""

from __future__ import annotations

from lorastack.bench.adapters import write_random_lora, write_random_loras

__all__ = ["write_random_lora", "write_random_loras"]
