"""Real PEFT LoRA adapters for the bundled model, made on the spot for integration tests."""

from __future__ import annotations

from pathlib import Path


def write_random_lora(base: Path, folder: Path, seed: int, std: float = 0.5) -> Path:
    """A rank-8 LoRA on q/v projections with random weights strong enough to change answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, std)
    peft_model.save_pretrained(folder)
    return folder
