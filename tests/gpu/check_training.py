"""GPU check of the training path (not part of CI): CUDA, bf16, padded vs packed speed.

Run on a GPU host with the project installed (the `gpu` extra):

    python tests/gpu/check_training.py [--steps 30] [--batch 16] [--max-length 1024]

No weights can be fetched there, so the model is a Llama built from a config with random
weights and the tokenizer is trained on the spot: this measures speed and exercises the
CUDA code paths (device placement, bf16, LoRA, TRL's packing), not quality. It trains with
the same SFTConfig/LoraConfig construction as `lorastack train` and prints tokens per
second and peak memory for padded and packed batches.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any


def _tokenizer(folder: Path) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = [f"w{i}" for i in range(4000)]
    corpus = [" ".join(random.choices(words, k=64)) for _ in range(2000)]
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=8000, special_tokens=["<unk>", "<pad>", "<eos>"])
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>"
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


def _model(folder: Path, vocab: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=1024,
        intermediate_size=2816,
        num_hidden_layers=16,
        num_attention_heads=16,
        num_key_value_heads=8,
        max_position_embeddings=2048,
    )
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)


def _run(model_dir: Path, packing: bool, steps: int, batch: int, max_length: int) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    rng = random.Random(0)
    texts = [
        " ".join(f"w{rng.randrange(4000)}" for _ in range(rng.randint(40, 700)))
        for _ in range(steps * batch * 2)
    ]
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out:
        trainer = SFTTrainer(
            model=str(model_dir),
            args=SFTConfig(
                output_dir=out,
                max_steps=steps,
                per_device_train_batch_size=batch,
                max_length=max_length,
                packing=packing,
                bf16=True,
                report_to="none",
                logging_steps=steps,
                save_strategy="no",
                dataset_text_field="text",
                learning_rate=2e-4,
                disable_tqdm=True,
                # real tokens only: padding is the cost packing removes
                include_num_input_tokens_seen="non_padding",
            ),
            train_dataset=Dataset.from_list([{"text": t} for t in texts]),
            peft_config=LoraConfig(
                r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"
            ),
        )
        assert next(trainer.model.parameters()).device.type == "cuda"
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        tokens = trainer.state.num_input_tokens_seen or 0
    return {
        "packing": packing,
        "steps": steps,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds) if tokens else None,
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=1024)
    options = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check is for GPU hosts")
    random.seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        tokenizer = _tokenizer(folder)
        _model(folder, len(tokenizer))
        results = [
            _run(folder, packing, options.steps, options.batch, options.max_length)
            for packing in (False, True)
        ]
    print(json.dumps({"device": torch.cuda.get_device_name(), "runs": results}, indent=2))


if __name__ == "__main__":
    main()
