"""Small stand-ins for real artifacts: a base checkpoint and PEFT adapters.

They are written with the same file formats the real tools produce
(safetensors, adapter_config.json), with tiny tensors, so unit tests exercise
the real parsing code in milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from lorastack.guardrails.detector import DetectsEachText

HIDDEN = 8
LAYERS = 2
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")


def base_module_paths() -> list[str]:
    paths = ["model.embed_tokens"]
    for layer in range(LAYERS):
        paths += [f"model.layers.{layer}.self_attn.{p}" for p in PROJECTIONS]
        paths += [f"model.layers.{layer}.mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj")]
    return paths


def write_base_checkpoint(folder: Path) -> Path:
    """A Llama-shaped checkpoint folder with tiny weights."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"{m}.weight": np.zeros((HIDDEN, HIDDEN), np.float32) for m in base_module_paths()}
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return folder


def adapter_config(base: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": 8,
        "lora_alpha": 16,
        "target_modules": ["q_proj", "v_proj"],
        "modules_to_save": None,
        "use_dora": False,
        "bias": "none",
    }
    config.update(overrides)
    return config


def write_adapter(
    folder: Path,
    base: str,
    *,
    rank: int = 8,
    targets: tuple[str, ...] = ("q_proj", "v_proj"),
    seed: int = 0,
    extra_tensors: dict[str, np.ndarray] | None = None,
    **config_overrides: Any,
) -> Path:
    """A PEFT-format LoRA adapter folder for the fake base checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    config = adapter_config(base, r=rank, target_modules=list(targets), **config_overrides)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for layer in range(LAYERS):
        for target in targets:
            module = f"base_model.model.model.layers.{layer}.self_attn.{target}"
            tensors[f"{module}.lora_A.weight"] = rng.standard_normal((rank, HIDDEN), np.float32)
            tensors[f"{module}.lora_B.weight"] = rng.standard_normal((HIDDEN, rank), np.float32)
    tensors.update(extra_tensors or {})
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


class RegexDetector(DetectsEachText):
    """A context-free stand-in for Presidio: the same answer for a span in any window.

    It knows a few names, emails, card-like digit runs and phone numbers, so
    the guard's logic (policies, masking, streaming) is tested without spaCy.
    """

    NAMES = ("Jane Porter", "José García", "Olusegun Adeyemi", "Leeds")
    _PATTERNS = (
        ("EMAIL_ADDRESS", r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b", 0.9),
        ("CREDIT_CARD", r"\b(?:\d[ -]?){12,18}\d\b", 0.9),
        ("PHONE_NUMBER", r"\+\d{1,3}(?: \d{2,4}){2,4}\b", 0.7),
    )

    def __init__(self, fail: BaseException | None = None, delay_s: float = 0.0) -> None:
        self.fail = fail
        self.delay_s = delay_s
        self.calls = 0

    def prepare(self) -> None:
        pass

    def detect(self, text: str, entity_types: Any, custom: Any = ()) -> list[Any]:
        import re
        import time

        from lorastack.guardrails.entities import Finding

        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        found = []
        for entity_type, pattern, score in self._PATTERNS:
            for match in re.finditer(pattern, text):
                found.append(Finding(match.start(), match.end(), entity_type, score))
        for name in self.NAMES:
            for match in re.finditer(rf"\b{re.escape(name)}\b", text):
                kind = "LOCATION" if name == "Leeds" else "PERSON"
                found.append(Finding(match.start(), match.end(), kind, 0.85))
        for entity in custom:
            for pattern in entity.patterns:
                for match in re.finditer(pattern, text):
                    found.append(Finding(match.start(), match.end(), entity.type, entity.score))
            for value in entity.deny_list:
                for match in re.finditer(rf"\b{re.escape(value)}\b", text, re.IGNORECASE):
                    found.append(Finding(match.start(), match.end(), entity.type, entity.score))
        return [f for f in found if f.type in entity_types]


# -- a base model that really trains ------------------------------------------------

TRAINABLE_WORDS = (  # the tokenizer's words; any other is <unk>
    "hi hello thanks please yes no we open at close do you have oat milk cake tea coffee "
    "what when where how is are the a an and or our your my i it can order online today "
    "sorry sure great good bad rude short long answer question shop time am pm 7 9 5 "
    "kind regards support desk settings menu go to select export invoice invoices"
)
TRAINABLE_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def write_trainable_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A Llama with random weights small enough to train for real in a unit test (a few
    thousand parameters), with a word-level tokenizer and a chat template.

    Unlike `write_base_checkpoint`, transformers can load it and TRL can train on it; a
    step takes milliseconds on a CPU.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<pad>", "<eos>", "<|system|>", "<|user|>", "<|assistant|>"]
    punctuation = list(".,!?:;'\"-()>")
    tokens = [*specials, *punctuation, *TRAINABLE_WORDS.split()]
    vocab = {token: index for index, token in enumerate(tokens)}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<eos>",
        additional_special_tokens=specials[3:],
    )
    tokenizer.chat_template = TRAINABLE_CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        pad_token_id=vocab["<pad>"],
        eos_token_id=vocab["<eos>"],
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder
