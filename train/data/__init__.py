"""Training data preparation: raw records in, clean train/validation/test splits out.

`prepare_dataset` (in `prepare`) runs the pipeline; each stage has its module:
`readers` (files to raw rows), `convert` (format detection, validation and
conversion to canonical records), `records` (the canonical record types and
helpers over them), `dedupe` (exact, near and MinHash duplicates), `split`
(deterministic, stratified splits), `report` (what was done) and `write` (the
dataset folder, atomically). The names below are the package's public surface;
the folder it writes is described in `lorastack.train.run`.
"""

from lorastack.train.data.convert import InvalidRecord, convert_record, detect_format
from lorastack.train.data.dedupe import fuzzy_duplicates
from lorastack.train.data.prepare import (
    PrepareOptions,
    load_examples,
    prepare_dataset,
    prepare_splits,
)
from lorastack.train.data.readers import read_rows
from lorastack.train.data.records import (
    INPUT_FORMATS,
    CanonicalFormat,
    ChatRecord,
    DataError,
    InputFormat,
    Message,
    PreferenceRecord,
    PromptCompletionRecord,
    Record,
    TextRecord,
    UnpairedPreferenceRecord,
    add_system_prompt,
    normalize_text,
    record_turns,
)
from lorastack.train.data.report import DataReport, PreparedSplits, PrepareResult
from lorastack.train.data.split import parse_split, split_indices, split_sizes, stratify_labels
from lorastack.train.data.write import write_dataset
from lorastack.train.paraphrase import DEFAULT_PARAPHRASES
from lorastack.train.run import SPLITS, dataset_sha256

__all__ = [
    "DEFAULT_PARAPHRASES",
    "INPUT_FORMATS",
    "SPLITS",
    "CanonicalFormat",
    "ChatRecord",
    "DataError",
    "DataReport",
    "InputFormat",
    "InvalidRecord",
    "Message",
    "PreferenceRecord",
    "PrepareOptions",
    "PrepareResult",
    "PreparedSplits",
    "PromptCompletionRecord",
    "Record",
    "TextRecord",
    "UnpairedPreferenceRecord",
    "add_system_prompt",
    "convert_record",
    "dataset_sha256",
    "detect_format",
    "fuzzy_duplicates",
    "load_examples",
    "normalize_text",
    "parse_split",
    "prepare_dataset",
    "prepare_splits",
    "read_rows",
    "record_turns",
    "split_indices",
    "split_sizes",
    "stratify_labels",
    "write_dataset",
]
