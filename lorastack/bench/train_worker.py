"""One training measurement in a process of its own: `run_variants` starts it.

A separate module so that running it (`python -m lorastack.bench.train_worker MODEL RESULT
--packing --spec JSON`) does not import `lorastack.bench.training` twice.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lorastack.bench.training import TrainingSpec, measure_training


def main() -> None:
    parser = argparse.ArgumentParser(description="One training measurement (internal).")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--packing", action=argparse.BooleanOptionalAction, required=True)
    parser.add_argument("--spec", required=True, help="TrainingSpec fields as JSON")
    options = parser.parse_args()
    spec = TrainingSpec(**json.loads(options.spec))
    run = measure_training(options.model_dir, options.packing, spec)
    options.result.write_text(json.dumps(run.to_dict()), encoding="utf-8")


if __name__ == "__main__":
    main()
