"""LoRA for vLLM's CPU engine at close to the base model's speed, as a vLLM plugin.

vLLM's CPU LoRA path (`vllm/lora/ops/torch_ops`, behind `PunicaWrapperCPU`) copies an
adapter's weights for every token of a batch and runs one einsum per slice of every merged
layer: adapters ran at about half the base model's speed. This package replaces that path
inside the engine that `lorastack serve` starts:

    ops.py      tokens grouped by adapter slot, the slices of a layer fused, the matmuls
    punica.py   the Punica wrapper vLLM's LoRA layers call, on top of those ops
    plugin.py   the `vllm.general_plugins` entry point: in on the CPU build it was written
                for, out (one log line) anywhere else or when turned off

`ops.py` needs only torch; `punica.py` and `plugin.py` import vLLM and run inside its
processes, never in the gateway's.
"""
