"""The tokenized-data cache: ``$FT_CACHE_DIR/data/<key>/`` (default ``~/.cache/ft/data``).

The key is a hash of everything that changes the tokens: the source's *contents* (never its path),
the tokenizer's identity (vocabulary, merges, special tokens, chat template), the format and every
option, and ft's version. A cache entry is written to a temporary folder and renamed into place, so
a failed or interrupted preprocessing never leaves a half-written entry that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

#: Bump when the builtin pipeline's output changes for the same inputs.
PIPELINE_VERSION = 1
_DATA_FILE = "data.arrow"
_META_FILE = "meta.json"


def cache_root() -> Path:
    """``$FT_CACHE_DIR/data``, or ``~/.cache/ft/data`` when the variable is unset or empty."""
    return Path(os.environ.get("FT_CACHE_DIR") or "~/.cache/ft").expanduser() / "data"


def tokenizer_identity(tokenizer: Any) -> str:
    """A hash of what makes the tokenizer produce the tokens it does (not where it was loaded from)."""
    digest = hashlib.sha256()
    digest.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    template = getattr(tokenizer, "chat_template", None)
    digest.update(json.dumps(template, sort_keys=True, default=str).encode())
    specials = {k: str(v) for k, v in getattr(tokenizer, "special_tokens_map", {}).items()}
    digest.update(json.dumps(specials, sort_keys=True).encode())
    for attribute in ("add_bos_token", "add_eos_token", "bos_token_id", "eos_token_id", "padding_side"):
        digest.update(f"{attribute}={getattr(tokenizer, attribute, None)}".encode())
    digest.update(str(len(tokenizer)).encode())
    return digest.hexdigest()


def make_key(parts: dict[str, Any]) -> str:
    """The cache key of one tokenized dataset: a hash of its JSON-serialised ingredients."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def entry_dir(key: str) -> Path:
    return cache_root() / key


def load(key: str) -> tuple[Any, dict[str, Any]] | None:
    """The cached ``datasets.Dataset`` (memory-mapped) and its stats, or ``None`` if absent."""
    folder = entry_dir(key)
    meta_path, data_path = folder / _META_FILE, folder / _DATA_FILE
    if not (meta_path.is_file() and data_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        from datasets import Dataset

        dataset = Dataset.from_file(str(data_path))
    except Exception:  # noqa: BLE001 - an unreadable entry is a miss, rebuilt below
        return None
    return dataset, meta.get("stats", {})


def to_table(examples: list[dict[str, list[int]]]) -> Any:
    """A pyarrow table with ``input_ids``, ``labels`` and ``attention_mask`` (int32 lists)."""
    import pyarrow as pa

    ids = [e["input_ids"] for e in examples]
    labels = [e["labels"] for e in examples]
    masks = [e.get("attention_mask") or [1] * len(e["input_ids"]) for e in examples]
    kind = pa.list_(pa.int32())
    return pa.table({"input_ids": pa.array(ids, type=kind), "labels": pa.array(labels, type=kind),
                     "attention_mask": pa.array(masks, type=kind)})


def write_arrow(table: Any, path: Path) -> None:
    """Write a table as an Arrow stream file (what ``datasets.Dataset.from_file`` maps)."""
    import pyarrow as pa

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


def store(key: str, examples: list[dict[str, list[int]]], stats: dict[str, Any], describe: dict[str, Any]) -> Path:
    """Write one entry atomically (temporary folder, then rename); return its folder."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = entry_dir(key)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.partial-", dir=root))
    try:
        write_arrow(to_table(examples), staging / _DATA_FILE)
        (staging / _META_FILE).write_text(json.dumps({"stats": stats, "inputs": describe}, indent=2, default=str) + "\n")
        if final.exists():
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(staging, final)
        except OSError:
            if not (final / _META_FILE).is_file():  # someone else won the race with a complete entry? else retry
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def remove(key: str) -> None:
    """Delete one entry (``ft preprocess --rebuild``)."""
    shutil.rmtree(entry_dir(key), ignore_errors=True)
