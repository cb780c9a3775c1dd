"""Builtin plugin: the data stage (sources, formats, length policy, cache) and ``ft preprocess``.

The work is done in the modules beside this one (public API: :mod:`ft_data.api`); this module wires it to the hooks: ``dataset_formats`` (the
builtin formats), ``prepare_dataset`` (the fallback data stage), ``collator``, ``validate_config``
(checks of ``data.datasets`` entries before anything loads) and ``cli_commands`` (``ft preprocess``).
Nothing heavy is imported at module level: ``ft validate`` stays fast.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ft.api import ConfigError, DataError, DatasetBundle, PluginInfo, RunContext, hookimpl

FT_PLUGIN = PluginInfo(
    name="data", contract="3.0",
    description="Data stage: local/hub sources, formats with exact label masking, cache, ft preprocess",
    always_active=True,
)


@dataclass
class DataState:
    """For one run: rebuild the cache, show progress bars (``None``: when the terminal is interactive), and
    what the data stage prepared (read by ``ft preprocess``)."""

    rebuild: bool = False
    progress: bool | None = None
    prepared: Any = None


@hookimpl
def config_schemas() -> dict[str, type]:
    from ft_data.schema import SCHEMAS

    return dict(SCHEMAS)


@hookimpl
def dataset_formats() -> dict[str, Any]:
    from ft_data.formats import BUILTIN_FORMATS

    return dict(BUILTIN_FORMATS)


def all_formats(ctx: RunContext) -> dict[str, Any]:
    """Every format the installed plugins contribute, by name (formats are config-time contributions:
    ``data.format=qa`` selects one without selecting its plugin's options)."""
    from ft_data.pipeline import resolve_formats

    return resolve_formats((ctx.installed_pm or ctx.pm).hook.dataset_formats())


def resolve_format(ctx: RunContext, name: str) -> Any:
    """The format callable named ``name`` among every plugin's ``dataset_formats``."""
    from ft_data.pipeline import pick_format

    return pick_format(all_formats(ctx), name)


def _bundle(ctx: RunContext, prepared: Any) -> DatasetBundle:
    ctx.state(DataState).prepared = prepared
    import logging

    log = logging.getLogger("ft")
    for name, part in prepared.parts.items():
        where = f"cache hit {part.cache_dir}" if part.cached else (f"cached in {part.cache_dir}" if part.cache_dir else "not cached")
        log.info("data %s: %s rows -> %s examples, %s tokens, %.1f%% trained (%s)", name, part.stats.get("rows_in"),
                 part.stats.get("rows"), part.stats.get("tokens"), 100 * float(part.stats.get("trained_fraction", 0)), where)
    return DatasetBundle(prepared.train, prepared.eval, stats=prepared.stats)


def bundle_from_rows(ctx: RunContext, rows: list[dict[str, Any]], source: str,
                     eval_rows: list[dict[str, Any]] | None = None) -> DatasetBundle:
    """Tokenize rows held in memory (cached like files) with ``data.format`` into a bundle;
    ``data.val_size`` splits off an evaluation set when ``eval_rows`` is not given."""
    from ft_data.pipeline import prepare_data

    state = ctx.state(DataState)
    prepared = prepare_data(ctx.cfg.data, ctx.tokenizer, all_formats(ctx), seed=ctx.cfg.seed, rows=rows,
                            eval_rows=eval_rows, source=source, rebuild=state.rebuild,
                            progress=state.progress)
    return _bundle(ctx, prepared)


@hookimpl(trylast=True)
def prepare_dataset(ctx: RunContext) -> DatasetBundle:
    from ft_data.pipeline import prepare_data

    state = ctx.state(DataState)
    prepared = prepare_data(ctx.cfg.data, ctx.tokenizer, all_formats(ctx), seed=ctx.cfg.seed,
                            rebuild=state.rebuild, progress=state.progress)
    return _bundle(ctx, prepared)


@hookimpl(trylast=True)
def collator(ctx: RunContext) -> Any:
    from ft_data.api import PaddingCollator

    return PaddingCollator(pad_token_id=ctx.tokenizer.pad_token_id)


# -- validation (no heavy imports) ---------------------------------------------------------------


def _check_entry(prefix: str, entry: Any, data: dict[str, Any]) -> None:
    from ft.api import validate_node
    from ft_data.schema import DatasetConfig
    from ft_data.sources import is_local

    if not isinstance(entry, dict):
        raise ConfigError(f"{prefix}={entry!r} is not valid: expected a mapping with at least 'path'")
    validate_node(prefix, entry, DatasetConfig)
    path = entry.get("path")
    if not isinstance(path, str) or not path or path == "???":
        raise ConfigError(f"'{prefix}.path' is required: a data file, a folder or a hub dataset id")
    if is_local(path):
        _check_local_data(f"{prefix}.path", path, entry.get("split") or "train", entry.get("data_files"))
    _check_format_options(prefix, {**data, **{k: v for k, v in entry.items() if v is not None}})


def _check_format_options(prefix: str, options: dict[str, Any]) -> None:
    from ft_data.formats import NAMED_CHAT_TEMPLATES

    fmt = options.get("format")
    if fmt == "template":
        template, marker = options.get("template"), options.get("train_marker") or "{train}"
        if not template:
            raise ConfigError(f"{prefix}.format=template needs {prefix}.template, e.g. 'Q: {{question}}\\nA: {marker}{{answer}}'")
        if template.count(marker) != 1:
            raise ConfigError(f"{prefix}.template must contain the marker {marker!r} exactly once (where training starts)")
    template = options.get("chat_template")
    if template and template != "tokenizer_default" and template not in NAMED_CHAT_TEMPLATES and "{{" not in template and "{%" not in template:
        raise ConfigError(f"{prefix}.chat_template={template!r}: expected tokenizer_default, "
                          f"{', '.join(NAMED_CHAT_TEMPLATES)}, or a Jinja template string")
    mappings = options.get("message_property_mappings") or {}
    unknown = [k for k in mappings if k not in ("role", "content")]
    if fmt == "chat_template" and unknown and not all(isinstance(v, str) for v in mappings.values()):
        raise ConfigError(f"{prefix}.message_property_mappings values must be field names (strings)")
    roles = options.get("roles") or {}
    for target, sources in roles.items():
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise ConfigError(f"{prefix}.roles.{target} must be a list of role names, e.g. [human]")


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    """Cross-field checks of ``data`` (ranges and format names are the schema's): each ``data.datasets``
    entry's path and format options, before anything loads."""
    from ft.api import to_plain
    from ft_data.schema import DataConfig

    if not isinstance(cfg.get("data"), DataConfig):  # another plugin's data option (data=preference)
        return
    data = to_plain(cfg.data)
    if not data.get("path") and not data.get("datasets") and data.get("task") is None:
        raise ConfigError(f"data={choices.get('data')} has no data: data.path is null; set "
                          f"data.path=FILE (a file, a folder or a hub id) or data.datasets=[{{path: ...}}]")
    for key in ("datasets", "val_datasets"):
        for index, entry in enumerate(data.get(key) or []):
            _check_entry(f"data.{key}[{index}]", entry, {k: v for k, v in data.items() if k not in ("datasets", "val_datasets")})
    if not data.get("datasets"):
        _check_format_options("data", data)
    for key in ("path", "val_path"):
        if data.get(key):
            _check_local_data(f"data.{key}", data[key], "train", None)


def _check_local_data(key: str, path: str, split: str, data_files: Any) -> None:
    """A local data path must exist and name data ft can read (a folder with no data file is an error)."""
    from ft.api import path_exists
    from ft_data.sources import is_local, resolve_files

    if not is_local(path):
        return
    if not path_exists(path, key):
        raise ConfigError(f"{key}={path!r}: no such file or folder; check the path")
    try:
        resolve_files(path, split, [data_files] if isinstance(data_files, str) else data_files)
    except DataError as exc:
        raise ConfigError(f"{key}={path!r}: {exc}") from exc


# -- ft preprocess ---------------------------------------------------------------------------------


def _add_preprocess_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for ft run (data=chat data.path=...)")
    parser.add_argument("--rebuild", action="store_true", help="tokenize again even if the cache has this data")
    parser.add_argument("--show", type=int, default=0, metavar="N",
                        help="print N examples with trained and masked tokens told apart")
    parser.add_argument("--export", metavar="FILE.jsonl", help="write the tokenized training rows (input_ids, labels, attention_mask)")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="colour in --show (default: auto)")


def _run_preprocess(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from ft.api import prepare_run

    for item in args.overrides:
        if item.startswith("-"):
            raise ConfigError(f"unknown option '{item}'; overrides look like key=value")
    prepared = prepare_run(list(args.overrides), list(getattr(args, "ft_p_flags", [])))
    pm = prepared.pm
    with tempfile.TemporaryDirectory(prefix="ft-preprocess-") as scratch:
        ctx = prepared.context(Path(scratch))
        state = ctx.state(DataState)
        state.rebuild, state.progress = bool(args.rebuild), None if sys.stderr.isatty() else False
        ctx.tokenizer = pm.hook.load_tokenizer(ctx=ctx)
        bundle = pm.hook.prepare_dataset(ctx=ctx)
        if bundle is None:
            raise DataError("no plugin prepared a dataset for this config")
        prepared_data = ctx.state(DataState).prepared
        from ft_data.show import export_jsonl, print_report, show_examples

        print_report(prepared_data, bundle, sys.stdout)
        dataset = bundle.train
        columns = set(getattr(dataset, "column_names", []) or [])
        if (args.show or args.export) and not {"input_ids", "labels"} <= columns:
            raise DataError("this config's data stage does not produce tokenized rows (input_ids, labels) to show or export")
        if args.show:
            colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
            show_examples(dataset, ctx.tokenizer, int(args.show), sys.stdout, colour=colour)
        if args.export:
            count = export_jsonl(dataset, args.export)
            print(f"exported {count} rows to {args.export}")
    return 0


@hookimpl
def cli_commands() -> list[Any]:
    from ft.api import Command

    return [Command(name="preprocess", help="tokenize and cache the data of a config; report counts, show examples",
                    run=_run_preprocess, add_arguments=_add_preprocess_arguments)]


#: Written when the final model is saved (rank 0): each split's content hashes and the source files'; the
#: model card cites it.
DATASETS_RECORD = "datasets.json"


@hookimpl
def post_save(ctx: RunContext, output_dir: str) -> None:
    """``datasets.json`` in the run folder: what the model was trained on, by content hash."""
    from ft.api import to_plain

    if ctx.datasets is not None and ctx.cfg.get("data") is not None:
        record_datasets(ctx.run_dir, ctx.datasets, to_plain(ctx.cfg.data))


def table_sha256(table: Any) -> str:
    """SHA-256 of an Arrow table's contents, independent of how it is chunked or memory-mapped."""
    import pyarrow as pa

    digest = hashlib.sha256()
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        sink = pa.BufferOutputStream()
        batch = pa.record_batch([column], names=[name])
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()


def record_datasets(run_dir: Path, bundle: Any, cfg_data: dict[str, Any]) -> None:
    """Write ``datasets.json``: per split, the sha256 of the examples trained on (and of the source files)."""
    from ft_data.sources import is_local, resolve_files

    splits = {}
    for split in ("train", "eval"):
        dataset = getattr(bundle, split, None)
        if dataset is None or not hasattr(dataset, "data"):
            continue
        splits[split] = {"examples": len(dataset), "sha256": table_sha256(dataset.data.table)}
    sources = []
    entries = [{"path": cfg_data.get("path"), "split": "train"}, {"path": cfg_data.get("val_path"), "split": "eval"},
               *[{**e, "split": "train"} for e in cfg_data.get("datasets") or []],
               *[{**e, "split": "eval"} for e in cfg_data.get("val_datasets") or []]]
    for entry in entries:
        path = entry.get("path")
        if not path:
            continue
        if not is_local(str(path)):  # a Hub dataset: its id (ft reads it from the local cache)
            sources.append({"path": str(path), "split": entry["split"]})
            continue
        try:
            files = resolve_files(str(path), entry.get("split") or "train", entry.get("data_files"))
        except Exception:  # noqa: BLE001 - a source that cannot be re-read keeps its name only
            files = []
        for file in files or [Path(str(path))]:
            source = {"path": str(file), "split": entry["split"]}
            if file.is_file():
                with file.open("rb") as handle:
                    source["sha256"] = hashlib.file_digest(handle, "sha256").hexdigest()
            sources.append(source)
    (run_dir / DATASETS_RECORD).write_text(json.dumps({"splits": splits, "sources": sources}, indent=2) + "\n")


@hookimpl(optionalhook=True)
def axolotl_keys() -> dict[str, Any]:
    """Axolotl's keys for this plugin (ft-axolotl): ``ft_data/axolotl.py``."""
    from ft_data.axolotl import AXOLOTL_KEYS

    return AXOLOTL_KEYS
