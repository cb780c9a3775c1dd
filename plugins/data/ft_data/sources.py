"""Where rows come from: local files and folders (json, jsonl, parquet, csv, arrow, gzip) and
Hugging Face dataset ids (offline-aware).

Every row keeps its origin (file and line, or file and row) so that a bad row is reported where the
user can find it. Every source has a *fingerprint* built from its contents, never from its path, so
the tokenized-data cache notices a file edited in place.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ft.api import DataError

#: File kinds ft reads, by extension (a trailing ``.gz`` is allowed on the text kinds).
TEXT_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
BINARY_KINDS = {".parquet": "parquet", ".arrow": "arrow"}
DATA_SUFFIXES = tuple(TEXT_KINDS) + tuple(BINARY_KINDS)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


@dataclass
class RowSource:
    """Rows read from one source, with enough bookkeeping to point at any row."""

    rows: list[dict[str, Any]]
    fingerprint: str
    label: str  # what error messages call the source
    files: list[str] = field(default_factory=list)
    #: per row: (index into ``files``, line or row number, "line" or "row")
    origins: list[tuple[int, int, str]] | None = None

    def where(self, index: int) -> str:
        """``file:line N`` (or ``file row N``) of row ``index`` (0-based), for messages."""
        if self.origins is None or index >= len(self.origins):
            return f"{self.label} row {index + 1}"
        file_index, number, unit = self.origins[index]
        return f"{self.files[file_index]} {unit} {number}"


def is_local(path: str) -> bool:
    """A path that names something on this machine (rather than a hub dataset id)."""
    if path.startswith(("hf://", "hub:")):
        return False
    try:
        exists = Path(path).expanduser().exists()
    except (OSError, ValueError):  # a name the OS refuses (over 255 bytes...): local, and reported as such
        return True
    if exists or path.startswith((".", "/", "~")):
        return True
    if file_kind(Path(path)) is not None or Path(path).suffix.lower() == ".gz":
        return True
    return not _HUB_ID.match(path)


def is_saved_dataset(path: str) -> bool:
    """A folder written by ``datasets``' ``save_to_disk``."""
    folder = Path(path).expanduser()
    return folder.is_dir() and any((folder / name).is_file() for name in ("dataset_dict.json", "state.json"))


def hub_id(path: str) -> str:
    """The dataset id of a ``hf://org/name`` / ``hub:org/name`` / ``org/name`` path."""
    for prefix in ("hf://datasets/", "hf://", "hub:"):
        if path.startswith(prefix):
            return path[len(prefix):]
    return path


def file_kind(path: Path) -> str | None:
    """``jsonl``/``json``/``csv``/``parquet``/``arrow`` from the file name (``.gz`` allowed), else None."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
        return TEXT_KINDS.get(suffixes[-1]) if suffixes else None
    if not suffixes:
        return None
    return TEXT_KINDS.get(suffixes[-1]) or BINARY_KINDS.get(suffixes[-1])


def hash_files(paths: list[Path]) -> str:
    """SHA-256 over the bytes of every file (in order): the content fingerprint of a local source."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            file_digest = hashlib.file_digest(handle, "sha256").hexdigest()
        digest.update(file_digest.encode())
    return digest.hexdigest()


def hash_rows(rows: list[dict[str, Any]]) -> str:
    """Fingerprint of rows held in memory (the embedded default task, tests)."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _stem(path: Path) -> str:
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    return name.rsplit(".", 1)[0]


def resolve_files(path: str, split: str = "train", data_files: list[str] | None = None) -> list[Path]:
    """The data files a local path names, in a stable order.

    A file is itself. A folder gives the files matching ``data_files`` (glob patterns relative to
    it) when set; otherwise the files named after ``split`` (``train.jsonl``, ``test.parquet``,
    ``train-00000-of-00002.parquet``...) when there are any; otherwise, for ``split=train``, every
    data file in it.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"data path '{path}' does not exist")
    if root.is_file():
        if data_files:
            raise DataError(f"'{path}' is a file; data_files only applies to folders and hub datasets")
        if file_kind(root) is None:
            raise DataError(f"{path}: unsupported file type; ft reads {', '.join(DATA_SUFFIXES)} (optionally .gz)")
        return [root]
    if data_files:
        found: list[Path] = []
        for pattern in data_files:
            matches = sorted(p for p in root.glob(pattern) if p.is_file())
            if not matches:
                raise DataError(f"data_files pattern '{pattern}' matches no file under '{path}'")
            found += [m for m in matches if m not in found]
        unknown = [p for p in found if file_kind(p) is None]
        if unknown:
            raise DataError(f"{unknown[0]}: unsupported file type; ft reads {', '.join(DATA_SUFFIXES)} (optionally .gz)")
        return found
    candidates = sorted(p for p in root.rglob("*") if p.is_file() and file_kind(p) is not None
                        and not any(part.startswith(".") for part in p.relative_to(root).parts))
    by_split = [p for p in candidates if _stem(p) == split or re.match(rf"^{re.escape(split)}[-_.]\d", _stem(p))]
    if by_split:
        return by_split
    if split != "train":
        raise DataError(f"no file for split '{split}' in '{path}' (looked for {split}.jsonl, {split}.parquet, ...)")
    if not candidates:
        raise DataError(f"folder '{path}' holds no data file ({', '.join(DATA_SUFFIXES)}, optionally .gz)")
    return candidates


def _open_text(path: Path) -> Any:
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def _read_text(path: Path) -> str:
    try:
        with _open_text(path) as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc


def _iter_json_file(path: Path, kind: str, bad_rows: str, dropped: list[str]) -> Iterator[tuple[int, dict[str, Any], str]]:
    text = _read_text(path)
    if kind == "json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                message = f"{path} row {number}: expected a JSON object, got {type(row).__name__}"
                if bad_rows == "drop":
                    dropped.append(message)
                    continue
                raise DataError(message)
            yield number, row, "row"
        return
    if kind == "json" and text.lstrip().startswith("{") and "\n" not in text.strip():
        kind = "jsonl"  # one object in a .json file
    loads = json.loads
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = loads(line)
        except json.JSONDecodeError as exc:
            message = f"{path} line {number}: invalid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object"
            if bad_rows == "drop":
                dropped.append(message)
                continue
            raise DataError(message) from exc
        if not isinstance(row, dict):
            message = f"{path} line {number}: expected a JSON object, got {type(row).__name__}"
            if bad_rows == "drop":
                dropped.append(message)
                continue
            raise DataError(message)
        yield number, row, "line"


def _iter_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """CSV rows as strings (a header line names the fields), with their line numbers."""
    import csv
    import io

    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    try:
        for row in reader:
            if None in row:
                raise DataError(f"{path} line {reader.line_num}: more values than the header has columns")
            yield reader.line_num, row
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: invalid CSV: {exc}") from exc


def _read_table(path: Path, kind: str) -> list[dict[str, Any]]:
    """Rows of a parquet or arrow file (through pyarrow, which ``datasets`` already needs)."""
    import pyarrow as pa

    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            with pa.memory_map(str(path)) as handle:
                try:
                    table = pa.ipc.open_stream(handle).read_all()
                except pa.ArrowInvalid:
                    handle.seek(0)
                    table = pa.ipc.open_file(handle).read_all()
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read as {kind}: {first}") from exc
    return table.to_pylist()


def read_local(path: str, split: str = "train", data_files: list[str] | None = None,
               bad_rows: str = "error") -> tuple[RowSource, list[str]]:
    """Read a local file or folder; return the rows and the messages of rows dropped as unreadable."""
    files = resolve_files(path, split, data_files)
    rows: list[dict[str, Any]] = []
    origins: list[tuple[int, int, str]] = []
    dropped: list[str] = []
    for file_index, file in enumerate(files):
        kind = file_kind(file)
        if kind in ("json", "jsonl"):
            for number, row, unit in _iter_json_file(file, kind, bad_rows, dropped):
                rows.append(row)
                origins.append((file_index, number, unit))
        elif kind == "csv":
            for number, row in _iter_csv(file):
                rows.append(row)
                origins.append((file_index, number, "line"))
        else:
            table_rows = _read_table(file, kind or "")
            rows += table_rows
            origins += [(file_index, number, "row") for number in range(1, len(table_rows) + 1)]
    source = RowSource(rows=rows, fingerprint=hash_files(files), label=str(path),
                       files=[str(f) for f in files], origins=origins)
    return source, dropped


def local_fingerprint(path: str, split: str = "train", data_files: list[str] | None = None) -> str:
    """The content fingerprint of a local source without parsing it (for cache look-ups)."""
    return hash_files(resolve_files(path, split, data_files))


def load_hub(path: str, name: str | None = None, split: str = "train",
             data_files: list[str] | None = None) -> RowSource:
    """A Hugging Face dataset, from the local cache when ``HF_HUB_OFFLINE=1`` (one-line errors)."""
    import datasets

    dataset_id = hub_id(path)
    local_dir = Path(path).expanduser()
    try:
        if is_saved_dataset(str(local_dir)):
            loaded = datasets.load_from_disk(str(local_dir))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise DataError(f"'{path}' has no split '{split}'; splits: {', '.join(loaded)}")
                loaded = loaded[split]
        else:
            loaded = datasets.load_dataset(dataset_id, name=name, split=split, data_files=data_files)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds; the user gets one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
        hint = " (offline: HF_HUB_OFFLINE=1, so only datasets already in the local Hugging Face cache load)" if offline else ""
        raise DataError(f"cannot load the dataset '{dataset_id}'{f' ({name})' if name else ''} split '{split}': {first}{hint}") from exc
    fingerprint = getattr(loaded, "_fingerprint", None) or hash_rows(loaded.to_list())
    return RowSource(rows=loaded.to_list(), fingerprint=f"hub:{fingerprint}", label=f"{dataset_id}[{split}]")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a local file or folder (json array, jsonl, parquet, csv, arrow; gzip allowed).

    Bad lines raise :class:`DataError` naming the file and line.
    """
    return read_local(str(path))[0].rows
