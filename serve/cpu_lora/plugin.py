"""The `vllm.general_plugins` entry point that puts the grouped LoRA ops into vLLM.

vLLM calls `register()` in each of its processes before it builds the model. The ops go in
only where they were written and tested: vLLM's CPU platform, vLLM 0.32, and the switch
(`LORASTACK_LORA_OPS`, set from the `engine.lora_ops` setting) not set to `vllm`.
Anywhere else vLLM's own ops stay and one log line says why.
"""

from __future__ import annotations

import logging
import os

# A child of vLLM's logger, so that the line lands where vLLM's own log goes.
logger = logging.getLogger("vllm.lorastack.cpu_lora")

SWITCH = "LORASTACK_LORA_OPS"
OURS = "lorastack"
STOCK = "vllm"
SUPPORTED_VLLM = "0.32."
"""The vLLM release line the wrapper was written against (its Punica wrapper interface)."""
WRAPPER = "lorastack.serve.cpu_lora.punica.GroupedPunicaWrapperCPU"


def reason_to_stay_out(switch: str | None, vllm_version: str, is_cpu: bool) -> str | None:
    """Why the grouped ops must not go in; None when they may."""
    choice = (switch or OURS).strip().lower()
    if choice == STOCK:
        return f"{SWITCH}={STOCK} asks for vLLM's own LoRA ops"
    if choice != OURS:
        return f"{SWITCH}={switch!r} is neither {OURS!r} nor {STOCK!r}; vLLM's own LoRA ops stay"
    if not vllm_version.startswith(SUPPORTED_VLLM):
        return f"written for vLLM {SUPPORTED_VLLM}x, this is vLLM {vllm_version}"
    if not is_cpu:
        return "they are for vLLM's CPU platform only"
    return None


def register() -> None:
    """Swap vLLM's CPU Punica wrapper for lorastack's, or log why not."""
    import vllm
    from vllm.platforms import current_platform

    reason = reason_to_stay_out(os.environ.get(SWITCH), vllm.__version__, current_platform.is_cpu())
    if reason is not None:
        logger.info("lorastack's CPU LoRA ops are off: %s.", reason)
        return
    platform_class = type(current_platform)

    def get_punica_wrapper(cls: type) -> str:
        return WRAPPER

    platform_class.get_punica_wrapper = classmethod(get_punica_wrapper)  # type: ignore[method-assign,assignment]
    logger.info("lorastack's CPU LoRA ops are on (%s).", WRAPPER)
