"""Greedy answers from vLLM's offline engine, all prompts in one batch and each alone.

Run as a process (`python -m tests.vllm_batch SPEC OUT`): lorastack's vLLM plugin decides
in each vLLM process whether its LoRA ops go in, so stock and plugin engines cannot share
one interpreter. SPEC is JSON: model, dtype, max_loras, max_tokens, adapters (name ->
folder), requests (prompt, adapter name or null) and alone (whether to answer each request
by itself too). OUT gets {"batched": [...],
"alone": [...]}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    spec = json.loads(sys.argv[1])
    adapters: dict[str, str] = spec["adapters"]
    ids = {name: index for index, name in enumerate(adapters, start=1)}
    llm = LLM(
        model=spec["model"],
        dtype=spec["dtype"],
        enable_lora=True,
        max_lora_rank=16,
        max_loras=spec["max_loras"],
        max_cpu_loras=max(spec["max_loras"], len(adapters)),
        max_model_len=1024,
        seed=0,
    )
    sampling = SamplingParams(temperature=0, max_tokens=spec["max_tokens"], ignore_eos=True)
    chats = [[{"role": "user", "content": prompt}] for prompt, _ in spec["requests"]]
    loras = [
        None if name is None else LoRARequest(name, ids[name], adapters[name])
        for _, name in spec["requests"]
    ]
    batched = llm.chat(chats, sampling, lora_request=loras, use_tqdm=False)
    alone = [
        llm.chat([chat], sampling, lora_request=lora, use_tqdm=False)[0]
        for chat, lora in zip(chats, loras, strict=True)
        if spec["alone"]
    ]
    Path(sys.argv[2]).write_text(
        json.dumps(
            {
                "batched": [r.outputs[0].text for r in batched],
                "alone": [r.outputs[0].text for r in alone],
            }
        )
    )


if __name__ == "__main__":
    main()
