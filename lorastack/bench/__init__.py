"""lorastack.bench: speed measured the same way every time, as ratios within one run.

A leaf like the command line: it drives the engine, the gateway (`lorastack serve`), the
guard benchmark (`lorastack guard bench`) and TRL as a user would, over HTTP and as
processes, and imports none of serve, guardrails or train.

    load.py      streamed chat requests, timed per token (TTFT, TPOT, tokens/s, failures)
    cases.py     the case matrix: route x workload x concurrency, and hot-swapping
    targets.py   ratios between cases and the targets they are held to
    report.py    bench.json, bench.md and PNG plots
    training.py  training tokens/s and peak memory, padded vs packed (CPU or GPU)
    stack.py     the scratch home, the gateway processes, the guard benchmark process
    adapters.py  random PEFT LoRA adapters for the bundled model
"""

from lorastack.bench.cases import CaseResult, ServingPlan, ServingStack, run_serving
from lorastack.bench.errors import BenchError
from lorastack.bench.load import RequestResult, RequestSpec, run_load
from lorastack.bench.report import BenchReport, write_report
from lorastack.bench.targets import Comparison, TargetCheck, compare, evaluate
from lorastack.bench.training import TrainingRun, TrainingSpec, measure_training

__all__ = [
    "BenchError",
    "BenchReport",
    "CaseResult",
    "Comparison",
    "RequestResult",
    "RequestSpec",
    "ServingPlan",
    "ServingStack",
    "TargetCheck",
    "TrainingRun",
    "TrainingSpec",
    "compare",
    "evaluate",
    "measure_training",
    "run_load",
    "run_serving",
    "write_report",
]
