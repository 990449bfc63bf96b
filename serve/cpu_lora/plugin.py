"""The `vllm.general_plugins` entry point that puts the grouped LoRA ops into vLLM.

vLLM calls `register()` in each of its processes before it builds the model. The ops go in
only where they were written and tested: vLLM's CPU platform, vLLM 0.32, and the switch
(`LORASTACK_LORA_OPS`, set from the `engine.lora_ops` setting) not set to `vllm`.
Anywhere else vLLM's own ops stay and one log line says why.

vLLM's CPU platform turns its compilation off whenever LoRA is on (its own CPU LoRA ops
cannot be traced). lorastack's are custom ops the compiler leaves opaque (punica.py), so
with `LORASTACK_LORA_COMPILE=1` (the `engine.lora_compile` setting) the model compiles
as it would without LoRA.
"""

from __future__ import annotations

import logging
import os
from typing import Any

# A child of vLLM's logger, so that the line lands where vLLM's own log goes.
logger = logging.getLogger("vllm.lorastack.cpu_lora")

SWITCH = "LORASTACK_LORA_OPS"
OURS = "lorastack"
STOCK = "vllm"
SUPPORTED_VLLM = "0.32."
"""The vLLM release line the wrapper was written against (its Punica wrapper interface)."""
WRAPPER = "lorastack.serve.cpu_lora.punica.GroupedPunicaWrapperCPU"
COMPILE_SWITCH = "LORASTACK_LORA_COMPILE"
"""`1`: keep vLLM's compilation of the model with LoRA on (with lorastack's ops only)."""


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
    if os.environ.get(COMPILE_SWITCH) == "1":
        keep_compilation_with_lora(platform_class)
    logger.info("lorastack's CPU LoRA ops are on (%s).", WRAPPER)


def keep_compilation_with_lora(platform_class: type) -> None:
    """Make the platform's config check compile the model as if LoRA were off.

    vLLM 0.32's CPU `check_and_update_config` reads `lora_config` once, to turn
    compilation off; the check runs with it hidden and puts it back after.
    """
    update = platform_class.check_and_update_config  # type: ignore[attr-defined]
    if getattr(update, "keeps_compilation", False):
        return  # this process registered the plugin already

    def check_and_update_config(cls: type, vllm_config: Any) -> None:
        lora = vllm_config.lora_config
        vllm_config.lora_config = None
        try:
            update(vllm_config)
        finally:
            vllm_config.lora_config = lora

    check_and_update_config.keeps_compilation = True  # type: ignore[attr-defined]
    platform_class.check_and_update_config = classmethod(check_and_update_config)  # type: ignore[attr-defined]
    logger.info("lorastack keeps vLLM's compilation of the model with LoRA on.")
