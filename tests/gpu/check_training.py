"""GPU check of the training path (not part of CI): CUDA, bf16, padded vs packed speed.

Run on a GPU host with the project installed (the `gpu` extra):

    python tests/gpu/check_training.py [--steps 30] [--batch 16] [--max-length 1024]

No weights can be fetched there, so the model is a Llama built from a config with random
weights and the tokenizer is trained on the spot: this measures speed and exercises the
CUDA code paths (device placement, bf16, LoRA, TRL's packing), not quality.

Two parts:
- TRL's SFTTrainer with LoRA r16 on all linear layers, padded then packed: tokens per
  second and peak memory (`lorastack.bench.training`, the same measurement as
  `lorastack bench --only train` makes on the CPU).
- lorastack's own training path (`run_training`, as `lorastack train` calls it) in instruct
  mode on the repository's example chat data: the device and bf16 must be chosen on their
  own, the adapter must validate, and it must change the model's logits on CUDA.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from lorastack.bench.training import TrainingSpec, measure_training

EXAMPLE_CHAT = Path(__file__).resolve().parents[2] / "examples" / "data" / "tiny-chat.jsonl"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def _tokenizer(folder: Path) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = [f"w{i}" for i in range(4000)]
    corpus = [" ".join(random.choices(words, k=64)) for _ in range(2000)]
    corpus += EXAMPLE_CHAT.read_text(encoding="utf-8").splitlines()  # real words for part two
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=8000, special_tokens=["<unk>", "<pad>", "<eos>"])
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
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


def _lorastack_run(model_dir: Path, scratch: Path) -> dict[str, Any]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from lorastack.models import ModelStore
    from lorastack.train.config import build_config
    from lorastack.train.trainer import RunPaths, run_training

    seen: dict[str, Any] = {}

    class Placement(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            model = kwargs["model"]
            trainable = next(p for p in model.parameters() if p.requires_grad)
            frozen = next(p for p in model.parameters() if not p.requires_grad)
            seen.update(
                device=trainable.device.type,
                bf16=bool(args.bf16),
                use_cpu=bool(args.use_cpu),
                frozen_dtype=str(frozen.dtype),
                trainable_dtype=str(trainable.dtype),
            )

    store = ModelStore(scratch / "models")
    store.add(model_dir, "random-llama")
    config = build_config(
        {
            "domain": "gpu-check",
            "data": str(EXAMPLE_CHAT),
            "mode": "instruct",
            "system_prompt": "You are the friendly barista assistant of Bean There.",
            "lora": {"r": 16, "lora_alpha": 32, "target_modules": "all-linear"},
            "training": {
                "max_steps": 20,
                "eval_steps": 5,
                "save_steps": 5,
                "logging_steps": 5,
                "per_device_train_batch_size": 4,
                "learning_rate": 1e-3,
                "max_length": 256,
            },
        }
    )
    started = time.perf_counter()
    result = run_training(
        config, RunPaths(scratch / "run"), store, "random-llama", 16, extra_callbacks=[Placement()]
    )
    seconds = time.perf_counter() - started
    assert seen["device"] == "cuda" and not seen["use_cpu"], seen
    assert seen["bf16"] == torch.cuda.is_bf16_supported(), seen
    if seen["bf16"]:
        assert seen["frozen_dtype"] == "torch.bfloat16", seen

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    inputs = tokenizer("Do you have oat milk?", return_tensors="pt").to("cuda")
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to("cuda")
    with torch.no_grad():
        before = base(**inputs).logits.float()
        tuned = PeftModel.from_pretrained(base, str(result.paths.adapter)).to("cuda")
        after = tuned(**inputs).logits.float()
    change = float((after - before).abs().max())
    assert change > 0, "the trained adapter left the logits unchanged"
    losses = [
        json.loads(line)["eval_loss"]
        for line in result.paths.log.read_text(encoding="utf-8").splitlines()
        if "eval_loss" in line
    ]
    assert losses, "no validation loss was logged"
    return {
        **seen,
        "steps": result.steps,
        "seconds": round(seconds, 1),
        "eval_losses": [round(v, 3) for v in losses],
        "best_eval_loss": result.best_eval_loss,
        "max_logit_change": round(change, 4),
        "adapter_rank": result.adapter.lora.rank,
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
        spec = TrainingSpec(steps=options.steps, batch=options.batch, max_length=options.max_length)
        results = [measure_training(folder, packing, spec).to_dict() for packing in (False, True)]
        lorastack_run = _lorastack_run(folder, folder / "lorastack")
    report = {"device": torch.cuda.get_device_name(), "runs": results, "lorastack": lorastack_run}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
