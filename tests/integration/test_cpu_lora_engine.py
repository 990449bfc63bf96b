"""lorastack's CPU LoRA ops in real vLLM: the same greedy answers as vLLM's own ops.

Several adapters of both shapes lorastack serves (rank 8 on q/v, rank 16 on every linear
layer) and the base model, mixed in one batch of vLLM's offline engine, in float32 so that
equal maths gives equal tokens. The reference is each request alone through vLLM's own ops:
a batch of one request is one adapter or none, which vLLM's ops handle right.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lorastack.bench.adapters import ALL_LINEAR_RANK16, QV_RANK8, write_random_loras
from lorastack.models import ModelRecord
from lorastack.processes import OFFLINE_ENV
from lorastack.serve.cpu_lora.plugin import SWITCH

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = [
    "What is your return policy?",
    "How long does a repair take?",
    "Tell me about your stoves.",
    "Can I change my order?",
    "Where is my parcel?",
    "Do you ship abroad?",
]


def _answers(ops: str, spec: dict[str, object], folder: Path, alone: bool) -> dict[str, list[str]]:
    spec = {**spec, "alone": alone}
    out = folder / f"{ops}.json"
    log = folder / f"{ops}.log"
    env = {**os.environ, **OFFLINE_ENV, SWITCH: ops, "VLLM_CPU_KVCACHE_SPACE": "1"}
    # The engine core and its worker in this process rather than two more (the CPU platform
    # then keeps vLLM's in-process executor): each would import vLLM and torch again, about
    # half a minute a run here. The plugin and its switch work the same either way; its own
    # INFO line ("ops are on/off") does not show in this process's log, so the test reads
    # which Punica wrapper vLLM built.
    env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    with log.open("wb") as sink:
        done = subprocess.run(
            [sys.executable, "-m", "tests.vllm_batch", json.dumps(spec), str(out)],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
        )
    text = log.read_text(errors="replace")
    assert done.returncode == 0, text[-3000:]
    # vLLM names the Punica wrapper it builds the LoRA layers with.
    wrapper = "GroupedPunicaWrapperCPU" if ops == "lorastack" else "PunicaWrapperCPU"
    assert f"Using {wrapper}." in text
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_mixed_batches_answer_as_each_request_alone_on_vllms_ops(
    bundled_model: ModelRecord, tmp_path: Path
) -> None:
    qv = [(tmp_path / "qv-1", 1), (tmp_path / "qv-2", 2)]
    write_random_loras(bundled_model.path, qv, std=0.05, shape=QV_RANK8)
    write_random_loras(
        bundled_model.path, [(tmp_path / "all-1", 3)], std=0.02, shape=ALL_LINEAR_RANK16
    )
    # Base-model requests sit between adapters' requests; two slots (the engine's default
    # max_loras) for three adapters, so batches also swap adapters in and out.
    names = [None, "qv-1", "all-1", None, "qv-2", "all-1"]
    spec = {
        "model": str(bundled_model.path),
        "dtype": "float32",
        "max_loras": 2,
        "max_tokens": 16,
        "adapters": {name: str(tmp_path / name) for name in ("qv-1", "qv-2", "all-1")},
        # The last two: the base model on the prompts of qv-1 and all-1.
        "requests": [[p, n] for p, n in zip(PROMPTS, names, strict=True)]
        + [[PROMPTS[1], None], [PROMPTS[2], None]],
    }

    ours = _answers("lorastack", spec, tmp_path, alone=False)
    stock = _answers("vllm", spec, tmp_path, alone=True)

    assert ours["batched"] == stock["alone"]
    # The adapters do change the answers, so the comparisons above compare something.
    assert stock["alone"][1] != stock["alone"][6]
    assert stock["alone"][2] != stock["alone"][7]
