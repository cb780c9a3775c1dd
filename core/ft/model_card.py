"""Hugging Face model cards for what ft saves (``model/``, ``merged/``).

The card is built from the run folder alone (``config.yaml``, ``run.json``, ``summary.json``,
``datasets.json``, ``loss.png``), so ``ft merge`` writes the same facts next to the merged weights
long after training ended. Its YAML front matter is what the Hub reads (base model, library, tags);
the body says how the model was made: method, adapter, data with content hashes, ft and plugin
versions, the hyperparameters that matter, final metrics and the loss curve.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

#: Written by the run (rank 0) when the final model is saved: each split's content hashes.
DATASETS_RECORD = "datasets.json"
#: ``model.name_or_path`` values that stand for a Hub model ft ships offline.
_BUILTIN_HUB_IDS = {"builtin:smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
#: (label, config path) of the hyperparameters the card lists, when set.
_HYPERPARAMETERS = (
    ("learning rate", "optim.lr"), ("optimizer", "optim.name"), ("scheduler", "optim.scheduler"),
    ("warm-up steps", "optim.warmup_steps"), ("weight decay", "optim.weight_decay"),
    ("micro batch size", "trainer.micro_batch_size"),
    ("gradient accumulation steps", "trainer.gradient_accumulation_steps"), ("epochs", "trainer.num_epochs"),
    ("max steps", "trainer.max_steps"), ("precision", "trainer.precision"), ("sequence length", "data.sequence_len"),
    ("LoRA rank", "adapter.r"), ("LoRA alpha", "adapter.alpha"), ("beta", "method.beta"), ("seed", "seed"),
)


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
    from ft.data.sources import is_local, resolve_files

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


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _get(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_model_card(folder: Path, run_dir: Path, merged_from: Path | None = None) -> Path:
    """Write ``README.md`` (a Hugging Face model card) into ``folder`` from the run folder's records.

    ``merged_from`` marks a merged model: the adapter folder it was merged from. Returns the card's path.
    """
    import yaml
    from huggingface_hub import ModelCard, ModelCardData

    folder, run_dir = Path(folder), Path(run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    record = _read_json(run_dir / "run.json")
    metrics = _read_json(run_dir / "summary.json")
    data = _read_json(run_dir / DATASETS_RECORD)
    choices = record.get("choices", {})
    base = str(_get(config, "model.name_or_path") or "")
    base = _BUILTIN_HUB_IDS.get(base, base)
    method = choices.get("method") or "sft"
    adapter = choices.get("adapter")
    is_adapter = bool(adapter) and merged_from is None and (folder / "adapter_config.json").is_file()
    tags = ["ft", method, *([adapter] if adapter else []), *(["merged"] if merged_from else [])]
    card_data = ModelCardData(
        base_model=base if base and not Path(base).is_absolute() else None,
        library_name="peft" if is_adapter else "transformers",
        pipeline_tag="text-generation", tags=tags,
    )
    plugins = [p for p in record.get("plugins", []) if p.get("active") and not p.get("builtin")]
    packages = record.get("packages", {})
    lines = [
        f"# {run_dir.name}" + (" (merged)" if merged_from else ""),
        "",
        f"Fine-tuned with ft from `{base or 'unknown'}`: method `{method}`"
        + (f", adapter `{adapter}`" if adapter else ", every weight trained") + ".",
    ]
    if merged_from:
        lines += ["", f"The adapter in `{merged_from}` merged into the base weights: a standalone model."]
    lines += ["", "Command:", "", "```", record.get("command", "ft run"), "```", "", "## Data", ""]
    if data.get("sources"):
        lines += ["| file | split | sha256 |", "|---|---|---|"]
        lines += [f"| `{s['path']}` | {s['split']} | `{s.get('sha256', '-')}` |" for s in data["sources"]]
        lines.append("")
    elif choices.get("data"):
        lines += [f"ft's embedded `{choices['data']}` data (generated by ft from `data.task.seed`).", ""]
    if data.get("splits"):
        lines += ["| split | examples | sha256 of the examples trained on |", "|---|---|---|"]
        lines += [f"| {name} | {s['examples']} | `{s['sha256']}` |" for name, s in data["splits"].items()]
        lines.append("")
    lines += ["## Training hyperparameters", "", "| | |", "|---|---|"]
    lines += [f"| {label} | {_fmt(value)} |" for label, path in _HYPERPARAMETERS
              if (value := _get(config, path)) not in (None, -1, "")]
    if metrics:
        lines += ["", "## Final metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics.items() if isinstance(v, (int, float, str))]
    if (run_dir / "loss.png").is_file():
        shutil.copyfile(run_dir / "loss.png", folder / "loss.png")
        lines += ["", "## Loss curve", "", "![training loss](loss.png)"]
    lines += ["", "## Versions", "", f"- ft {_ft_version()}"]
    lines += [f"- {p['distribution'] or p['name']} {p['version']}" for p in plugins]
    lines += [f"- {name} {version}" for name, version in packages.items()]
    lines += ["", "## Use", "", "```python"]
    if is_adapter:
        lines += ["from peft import AutoPeftModelForCausalLM", "",
                  'model = AutoPeftModelForCausalLM.from_pretrained("path/to/this/folder")']
    else:
        lines += ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")',
                  'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")']
    lines += ["```", "", "or `ft generate` / `ft chat` on the folder."]
    content = f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"
    path = folder / "README.md"
    ModelCard(content).save(path)
    return path


def _ft_version() -> str:
    from ft import __version__

    return __version__
