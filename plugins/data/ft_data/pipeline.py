"""The data stage: sources -> format -> length policy -> cache -> train/eval datasets.

``prepare_data`` is what ``ft run`` and ``ft preprocess`` both call, so a run finds exactly what
preprocessing cached. Each dataset (an entry of ``data.datasets``, or the ``data.path`` shorthand)
is tokenized and cached on its own; mixing, shuffling and the validation split happen afterwards,
on the cached tokens, and cost next to nothing.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ft.api import ConfigError, DataError
from ft_data import cache
from ft_data.formats import IGNORE_INDEX, Bad, FormatOptions
from ft_data.sources import RowSource, hash_rows, is_local, is_saved_dataset, load_hub, local_fingerprint, read_local

log = logging.getLogger("ft")

#: Options a dataset entry may set for itself; unset ones come from ``data.*``.
FORMAT_OPTION_NAMES = tuple(f for f in FormatOptions.__dataclass_fields__ if f != "sequence_len")
LOW_TRAINED_FRACTION = 0.05
BATCH_ROWS = 256


@dataclass
class DatasetSpec:
    """One dataset to tokenize: where its rows are, their format and the format's options."""

    format: str
    options: FormatOptions
    path: str | None = None
    rows: list[dict[str, Any]] | None = None
    split: str = "train"
    name: str | None = None
    data_files: list[str] | None = None
    max_rows: int | None = None
    label: str = "data"


@dataclass
class Policy:
    """What to do with rows that do not fit (``too_long``), are too short, or are malformed."""

    sequence_len: int = 512
    too_long: str = "drop"  # drop | truncate | error
    min_len: int = 2
    bad_rows: str = "error"  # error | drop
    shuffle: bool = True
    seed: int = 42


@dataclass
class Tokenized:
    """One dataset after tokenization: the ``datasets.Dataset`` and what happened on the way."""

    dataset: Any
    stats: dict[str, Any]
    cache_dir: str | None = None
    cached: bool = False
    key: str | None = None


@dataclass
class PreparedData:
    """The data stage's result: the training and optional evaluation datasets, with counts."""

    train: Any
    eval: Any | None
    parts: dict[str, Tokenized] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def plain(node: Any) -> Any:
    """A plain dict/list copy of a typed config section or an OmegaConf node (or the value itself)."""
    from ft.api import ConfigSection, to_plain

    if isinstance(node, ConfigSection) or (hasattr(node, "__dataclass_fields__") and not isinstance(node, type)):
        return to_plain(node)
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(node, (DictConfig, ListConfig)):
            return OmegaConf.to_container(node, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return node


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    value = cfg.get(key, default) if isinstance(cfg, dict) else getattr(cfg, key, default)
    return default if value is None else value


def options_for(data_cfg: dict[str, Any], entry: dict[str, Any] | None = None) -> FormatOptions:
    """A dataset's format options: its own values over the ``data.*`` defaults."""
    merged = {name: data_cfg.get(name) for name in FORMAT_OPTION_NAMES if data_cfg.get(name) is not None}
    for name in FORMAT_OPTION_NAMES:
        if entry and entry.get(name) is not None:
            merged[name] = entry[name]
    merged["sequence_len"] = int(data_cfg.get("sequence_len") or 512)
    return FormatOptions(**merged)  # type: ignore[arg-type]  # each value checked by the schema at validate


def policy_for(data_cfg: dict[str, Any], seed: int) -> Policy:
    return Policy(sequence_len=int(_get(data_cfg, "sequence_len", 512)), too_long=_get(data_cfg, "too_long", "drop"),
                  min_len=int(_get(data_cfg, "min_len", 2)), bad_rows=_get(data_cfg, "bad_rows", "error"),
                  shuffle=bool(_get(data_cfg, "shuffle", True)),
                  seed=int(data_cfg["seed"]) if data_cfg.get("seed") is not None else int(seed))


def _listify(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def specs_from_config(data_cfg: dict[str, Any], which: str = "train") -> list[DatasetSpec]:
    """The datasets a config names for ``which`` (``train`` or ``eval``)."""
    entries = data_cfg.get("datasets" if which == "train" else "val_datasets") or []
    shorthand = data_cfg.get("path" if which == "train" else "val_path")
    specs = []
    if entries:
        for number, entry in enumerate(entries, start=1):
            prefix = f"data.{'datasets' if which == 'train' else 'val_datasets'}[{number - 1}]"
            if not entry.get("path"):
                raise ConfigError(f"{prefix}.path is required")
            specs.append(DatasetSpec(
                format=entry.get("format") or data_cfg.get("format") or "alpaca",
                options=options_for(data_cfg, entry), path=str(entry["path"]), split=entry.get("split") or "train",
                name=entry.get("name"), data_files=_listify(entry.get("data_files")),
                max_rows=entry.get("max_rows") if entry.get("max_rows") is not None else data_cfg.get("max_rows"),
                label=str(entry["path"])))
    elif shorthand:
        specs.append(DatasetSpec(format=data_cfg.get("format") or "alpaca", options=options_for(data_cfg),
                                 path=str(shorthand), max_rows=data_cfg.get("max_rows") if which == "train" else None,
                                 label=str(shorthand)))
    elif which == "train":
        raise DataError("data.path is not set: point it at a data file or folder (data.path=...), or list data.datasets")
    return specs


# -- running a format ----------------------------------------------------------------------------

_JOB: tuple[Any, Any, Any, int | None] | None = None


#: No tokenizer makes a token of more characters than this: a row with more characters than
#: ``sequence_len`` times it cannot fit, and is dropped (or refused) without being tokenized.
MAX_CHARS_PER_TOKEN = 64


@dataclass
class Overlong:
    """A row known to be too long from its character count alone (never tokenized)."""

    chars: int


def _row_chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_row_chars(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_row_chars(v) for v in value)
    return 0


def _format_chunk(rows: list[dict[str, Any]]) -> list[Any]:
    formatter, tokenizer, options, char_limit = _JOB  # type: ignore[misc]
    if char_limit:
        sizes = [_row_chars(row) for row in rows]
        if any(size > char_limit for size in sizes):  # check the length cheaply before tokenizing
            fits = [row for row, size in zip(rows, sizes) if size <= char_limit]
            done = iter(_format_rows(fits, formatter, tokenizer, options))
            return [Overlong(size) if size > char_limit else next(done) for size in sizes]
    return _format_rows(rows, formatter, tokenizer, options)


def _format_rows(rows: list[dict[str, Any]], formatter: Callable[..., Any], tokenizer: Any, options: Any) -> list[Any]:
    batch = getattr(formatter, "batch", None)
    if batch is not None:
        return batch(rows, tokenizer, options)
    out: list[Any] = []
    for row in rows:
        try:
            out.append(formatter(row, tokenizer, options))
        except DataError as exc:
            out.append(Bad(str(exc)))
    return out


def _child_init() -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def auto_num_proc(n_rows: int, requested: int | None) -> int:
    """Processes to tokenize with: ``data.num_proc`` if set, else one.

    Measured on the 2-core reference machine (BENCHMARKS.md, preprocess): a second process made
    tokenizing slower, not faster (pickling results back costs more than the shared cores give), so
    parallel tokenization is opt-in.
    """
    if requested is not None and n_rows >= 2 * BATCH_ROWS:
        return max(1, int(requested))
    return 1


def run_format(formatter: Callable[..., Any], rows: list[dict[str, Any]], tokenizer: Any, options: Any,
               num_proc: int = 1, progress: Any = None, char_limit: int | None = None) -> list[Any]:
    """Apply a format to every row (in batches, across processes when asked); keeps row order.
    Rows of more than ``char_limit`` characters come back as :class:`Overlong`, untokenized."""
    global _JOB
    chunks = [rows[i:i + BATCH_ROWS] for i in range(0, len(rows), BATCH_ROWS)]
    _JOB = (formatter, tokenizer, options, char_limit)
    results: list[Any] = []
    try:
        if num_proc > 1 and len(chunks) > 1 and "fork" in multiprocessing.get_all_start_methods():
            with multiprocessing.get_context("fork").Pool(num_proc, initializer=_child_init) as pool:
                for part in pool.imap(_format_chunk, chunks):
                    results += part
                    if progress is not None:
                        progress.update(len(part))
        else:
            for chunk in chunks:
                part = _format_chunk(chunk)
                results += part
                if progress is not None:
                    progress.update(len(part))
    finally:
        _JOB = None
    return results


# -- length policy and counts ----------------------------------------------------------------------


def _percentiles(lengths: list[int]) -> dict[str, int]:
    if not lengths:
        return {}
    ordered = sorted(lengths)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]  # noqa: E731
    return {"len_min": ordered[0], "len_p50": pick(0.5), "len_p90": pick(0.9), "len_p99": pick(0.99), "len_max": ordered[-1]}


def apply_policy(results: list[Any], policy: Policy, where: Callable[[int], str], label: str,
                 dropped_unreadable: list[str] | None = None) -> tuple[list[dict[str, list[int]]], dict[str, Any]]:
    """Check every example, apply the length policy, count everything; raise on a bad row."""
    stats: dict[str, Any] = {"rows_in": len(results) + len(dropped_unreadable or []), "examples": 0,
                             "dropped_bad_row": len(dropped_unreadable or []), "dropped_too_long": 0, "truncated": 0,
                             "dropped_too_short": 0, "dropped_no_trained_tokens": 0, "rows": 0,
                             "tokens": 0, "trained_tokens": 0}
    first_bad = dropped_unreadable[0] if dropped_unreadable else None
    kept: list[dict[str, list[int]]] = []
    lengths: list[int] = []
    limit = policy.sequence_len
    for index, result in enumerate(results):
        if isinstance(result, Bad):
            if policy.bad_rows == "drop":
                stats["dropped_bad_row"] += 1
                first_bad = first_bad or f"{where(index)}: {result.message}"
                continue
            raise DataError(f"{where(index)}: {result.message}")
        if isinstance(result, Overlong):
            if policy.too_long == "error":
                raise DataError(f"{where(index)}: {result.chars:,} characters, far longer than data.sequence_len={limit} "
                                f"tokens (data.too_long=error; use drop or truncate to go on)")
            stats["dropped_too_long"] += 1
            continue
        examples = result if isinstance(result, list) else [result]
        for example in examples:
            stats["examples"] += 1
            ids, labels = example.get("input_ids"), example.get("labels")
            if not isinstance(ids, list) or not isinstance(labels, list) or len(ids) != len(labels):
                raise DataError(f"{where(index)}: the format returned input_ids and labels of different lengths")
            if limit and len(ids) > limit:
                if policy.too_long == "error":
                    raise DataError(f"{where(index)}: {len(ids)} tokens, longer than data.sequence_len={limit} "
                                    f"(data.too_long=error; use drop or truncate to go on)")
                if policy.too_long == "drop":
                    stats["dropped_too_long"] += 1
                    continue
                stats["truncated"] += 1
                ids, labels = ids[:limit], labels[:limit]
            if len(ids) < policy.min_len:
                stats["dropped_too_short"] += 1
                continue
            trained = sum(1 for label in labels if label != IGNORE_INDEX)
            if trained == 0:
                stats["dropped_no_trained_tokens"] += 1
                continue
            stats["tokens"] += len(ids)
            stats["trained_tokens"] += trained
            lengths.append(len(ids))
            kept.append({"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)})
    stats["rows"] = len(kept)
    stats["trained_fraction"] = round(stats["trained_tokens"] / stats["tokens"], 4) if stats["tokens"] else 0.0
    stats.update(_percentiles(lengths))
    if first_bad and policy.bad_rows == "drop":
        stats["first_bad_row"] = first_bad
    if not kept:
        raise DataError(
            f"{label}: no example has a trained token ({stats['rows_in']} rows in: {stats['dropped_bad_row']} malformed, "
            f"{stats['dropped_too_long']} longer than data.sequence_len={limit}, {stats['dropped_too_short']} shorter than "
            f"data.min_len={policy.min_len}, {stats['dropped_no_trained_tokens']} with every label masked)")
    return kept, stats


def warn_about(stats: dict[str, Any], label: str, fmt: str, options: FormatOptions) -> list[str]:
    """Warnings a user should see: a trained fraction that is suspiciously low, or 100%."""
    warnings = []
    fraction = stats.get("trained_fraction", 0.0)
    if fraction < LOW_TRAINED_FRACTION:
        warnings.append(f"{label}: only {100 * fraction:.1f}% of tokens are trained; check the format's masking options")
    elif fraction >= 1.0 and fmt not in ("completion", "pretokenized") and not options.train_on_inputs:
        warnings.append(f"{label}: 100% of tokens are trained, prompts included; is this the right format?")
    dropped = stats.get("dropped_too_long", 0)
    if dropped and dropped >= 0.1 * max(1, stats.get("examples", 0)):
        warnings.append(f"{label}: {dropped} of {stats['examples']} examples dropped as longer than data.sequence_len")
    return warnings


# -- one dataset: cache or tokenize ----------------------------------------------------------------


def _format_identity(fmt: str, formatter: Callable[..., Any]) -> dict[str, Any]:
    return {"name": fmt, "impl": f"{getattr(formatter, '__module__', '?')}.{getattr(formatter, '__qualname__', '?')}",
            "version": getattr(formatter, "cache_version", None)}


def _select(n_rows: int, max_rows: int | None, policy: Policy) -> list[int] | None:
    """Indices of the rows to keep under ``max_rows`` (a seeded sample when shuffling), or None for all."""
    if not max_rows or max_rows >= n_rows:
        return None
    if policy.shuffle:
        return sorted(random.Random(policy.seed).sample(range(n_rows), int(max_rows)))
    return list(range(int(max_rows)))


def tokenize_spec(spec: DatasetSpec, formatter: Callable[..., Any], tokenizer: Any, policy: Policy,
                  tokenizer_id: str, use_cache: bool = True, rebuild: bool = False, num_proc: int | None = None,
                  progress_factory: Callable[[int, str], Any] | None = None) -> Tokenized:
    """Tokenize one dataset, or load it from the cache when nothing that matters has changed."""
    source: RowSource | None = None
    dropped_unreadable: list[str] = []
    if spec.rows is not None:
        fingerprint = hash_rows(spec.rows)
    elif spec.path is not None and is_local(spec.path) and not is_saved_dataset(spec.path):
        fingerprint = local_fingerprint(spec.path, spec.split, spec.data_files)
    else:
        source = load_hub(spec.path or "", spec.name, spec.split, spec.data_files)
        fingerprint = source.fingerprint
    describe = {
        "ft": _ft_version(), "pipeline": cache.PIPELINE_VERSION, "source": fingerprint,
        "split": spec.split, "name": spec.name, "data_files": spec.data_files,
        "format": _format_identity(spec.format, formatter), "options": asdict(spec.options),
        "tokenizer": tokenizer_id, "policy": {"sequence_len": policy.sequence_len, "too_long": policy.too_long,
                                              "min_len": policy.min_len, "bad_rows": policy.bad_rows},
        "max_rows": spec.max_rows, "select": {"shuffle": policy.shuffle, "seed": policy.seed} if spec.max_rows else None,
    }
    key = cache.make_key(describe)
    if use_cache and rebuild:
        cache.remove(key)
    elif use_cache:
        hit = cache.load(key)
        if hit is not None:
            return Tokenized(dataset=hit[0], stats=hit[1], cache_dir=str(cache.entry_dir(key)), cached=True, key=key)
    if source is None:
        if spec.rows is not None:
            source = RowSource(rows=spec.rows, fingerprint=fingerprint, label=spec.label)
        else:
            source, dropped_unreadable = read_local(spec.path or "", spec.split, spec.data_files, policy.bad_rows)
    picked = _select(len(source.rows), spec.max_rows, policy)
    rows = source.rows if picked is None else [source.rows[i] for i in picked]
    where = source.where if picked is None else (lambda i: source.where(picked[i]))
    if not rows and not dropped_unreadable:
        raise DataError(f"{spec.label}: no rows")
    procs = auto_num_proc(len(rows), num_proc)
    progress = progress_factory(len(rows), spec.label) if progress_factory else None
    try:
        char_limit = policy.sequence_len * MAX_CHARS_PER_TOKEN if policy.too_long != "truncate" and policy.sequence_len else None
        results = run_format(formatter, rows, tokenizer, spec.options, num_proc=procs, progress=progress,
                             char_limit=char_limit)
    finally:
        if progress is not None:
            progress.close()
    examples, stats = apply_policy(results, policy, where, spec.label, dropped_unreadable)
    stats["format"] = spec.format
    from datasets import Dataset

    if use_cache:
        folder = cache.store(key, examples, stats, describe)
        hit = cache.load(key)
        if hit is not None:
            return Tokenized(dataset=hit[0], stats=stats, cache_dir=str(folder), cached=False, key=key)
    dataset = Dataset(cache.to_table(examples))
    return Tokenized(dataset=dataset, stats=stats, cache_dir=None, cached=False, key=key)


def _ft_version() -> str:
    from ft.api import FT_VERSION

    return FT_VERSION


def _progress_factory(enabled: bool | None) -> Callable[[int, str], Any] | None:
    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return None

    def make(total: int, label: str) -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=f"tokenizing {label}", unit="rows", file=sys.stderr, leave=False)

    return make


# -- the whole stage -------------------------------------------------------------------------------


def resolve_formats(format_maps: list[dict[str, Any]]) -> dict[str, Callable[..., Any]]:
    """Merge every plugin's ``dataset_formats``; the same name from two plugins is an error."""
    from ft.api import merge_contributions

    return merge_contributions(format_maps, "dataset_formats", same=lambda a, b: a is b, error=DataError)


def pick_format(formats: dict[str, Callable[..., Any]], name: str, where: str = "data.format") -> Callable[..., Any]:
    if name not in formats:
        from ft.api import did_you_mean

        raise ConfigError(f"{where}={name!r}: unknown format{did_you_mean(name, formats)}; available: {', '.join(sorted(formats))}")
    return formats[name]


def _concat(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    from datasets import concatenate_datasets

    return concatenate_datasets(parts)


def prepare_data(data_cfg: Any, tokenizer: Any, formats: dict[str, Callable[..., Any]], seed: int = 42,
                 rows: list[dict[str, Any]] | None = None, eval_rows: list[dict[str, Any]] | None = None,
                 source: str = "data", use_cache: bool | None = None, rebuild: bool = False,
                 progress: bool | None = None) -> PreparedData:
    """Tokenize (or load from the cache) every dataset the config names; mix, shuffle and split.

    ``rows`` replaces the configured sources with rows held in memory (the embedded default task).
    """
    data_cfg = plain(data_cfg) or {}
    policy = policy_for(data_cfg, seed)
    use_cache = bool(data_cfg.get("cache", True)) if use_cache is None else use_cache
    if rows is not None:
        train_specs = [DatasetSpec(format=data_cfg.get("format") or "alpaca", options=options_for(data_cfg), rows=list(rows),
                                   max_rows=data_cfg.get("max_rows"), label=source)]
        eval_specs = ([DatasetSpec(format=train_specs[0].format, options=train_specs[0].options, rows=list(eval_rows),
                                   label=f"{source} (eval)")] if eval_rows else [])
    else:
        train_specs = specs_from_config(data_cfg, "train")
        eval_specs = specs_from_config(data_cfg, "eval")
    tokenizer_id = cache.tokenizer_identity(tokenizer)
    factory = _progress_factory(progress)
    prepared = PreparedData(train=None, eval=None)
    train_parts: list[Any] = []
    eval_parts: list[Any] = []
    for which, specs, bucket in (("train", train_specs, train_parts), ("eval", eval_specs, eval_parts)):
        for number, spec in enumerate(specs):
            formatter = pick_format(formats, spec.format)
            part = tokenize_spec(spec, formatter, tokenizer, policy, tokenizer_id, use_cache=use_cache, rebuild=rebuild,
                                 num_proc=data_cfg.get("num_proc"), progress_factory=factory)
            name = spec.label if which == "train" else f"{spec.label} (eval)"
            if name in prepared.parts:
                name = f"{name} #{number + 1}"
            prepared.parts[name] = part
            bucket.append(part.dataset)
            for warning in warn_about(part.stats, spec.label, spec.format, spec.options):
                log.warning(warning)
    train = _concat(train_parts)
    val_size = float(data_cfg.get("val_size") or 0.0)
    evaluation = _concat(eval_parts) if eval_parts else None
    order = list(range(len(train)))
    if policy.shuffle:
        random.Random(policy.seed).shuffle(order)
    if evaluation is None and val_size > 0:
        n_eval = int(val_size) if val_size >= 1 else max(1, int(round(len(order) * val_size)))
        if n_eval >= len(order):
            raise DataError(f"data.val_size={data_cfg.get('val_size')} leaves no training examples out of {len(order)}")
        evaluation = train.select(sorted(order[:n_eval]) if not policy.shuffle else order[:n_eval])
        order = order[n_eval:]
    prepared.train = train.select(order) if (policy.shuffle or len(order) != len(train)) else train
    prepared.eval = evaluation
    prepared.stats = {"train": summary(prepared, "train"), **({"eval": summary(prepared, "eval")} if evaluation is not None else {})}
    return prepared


def summary(prepared: PreparedData, which: str) -> dict[str, Any]:
    """Counts of one split for the run log (``data (train): rows=..., tokens=...``)."""
    if which == "train":
        parts = [t for name, t in prepared.parts.items() if not name.endswith("(eval)")]
        dataset = prepared.train
    else:
        parts = [t for name, t in prepared.parts.items() if name.endswith("(eval)")]
        dataset = prepared.eval
    keys = ("rows_in", "dropped_bad_row", "dropped_too_long", "truncated", "dropped_too_short", "dropped_no_trained_tokens")
    out: dict[str, Any] = {}
    if parts:
        out = {k: sum(int(t.stats.get(k, 0)) for t in parts) for k in keys}
        out["cached"] = sum(1 for t in parts if t.cached)
    out["rows"] = len(dataset)
    return out
