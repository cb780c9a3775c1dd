"""Offline teacher targets: the teacher's top-k log-probabilities per trained position, stored once.

Layout of a ``ft kd dump`` folder::

    topk.safetensors   ids [N, k] int32, logprobs [N, k] float32: every trained position of every row
    index.json         {"k", "teacher", "vocab_size", "rows": {<row hash>: [offset, count]}}

A row is found by the hash of its ``input_ids``, so targets follow rows through any collator, padding or
packing (``packing=multipack``) without an extra column. Position ``i`` of a row is stored when it trains
(its next label is not -100), in order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ft.api import DataError

IGNORE_INDEX = -100


def row_hash(input_ids: Any) -> str:
    """A stable key for a row's token ids."""
    ids = torch.as_tensor(input_ids, dtype=torch.int64).cpu().contiguous()
    return hashlib.sha1(ids.numpy().tobytes()).hexdigest()


def trained_mask(labels: torch.Tensor) -> torch.Tensor:
    """Positions whose next label trains (1-D, for one row)."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:-1] = labels[1:] != IGNORE_INDEX
    return mask


@dataclass
class TopK:
    """An opened dump: the flat arrays and the row index."""

    ids: torch.Tensor
    logprobs: torch.Tensor
    rows: dict[str, tuple[int, int]]
    k: int
    meta: dict[str, Any]

    @classmethod
    def open(cls, folder: str | Path) -> TopK:
        from safetensors.torch import load_file

        folder = Path(folder)
        index_path, tensors_path = folder / "index.json", folder / "topk.safetensors"
        if not index_path.is_file() or not tensors_path.is_file():
            raise DataError(f"{folder}: not a `ft kd dump` folder (no index.json and topk.safetensors)")
        index = json.loads(index_path.read_text())
        tensors = load_file(tensors_path)
        return cls(tensors["ids"], tensors["logprobs"], {k: tuple(v) for k, v in index["rows"].items()},
                   int(index["k"]), {k: v for k, v in index.items() if k != "rows"})


def teacher_topk(teacher: Any, splits: list[Any], k: int, batch_size: int = 8, progress: Any = None) -> TopK:
    """Run ``teacher`` over tokenized rows (each split a sequence of ``{"input_ids", "labels"}``) and keep
    the top-k log-probabilities (T = 1) of every trained position, indexed by row."""
    import torch.nn.functional as F

    ids_parts: list[torch.Tensor] = []
    logprob_parts: list[torch.Tensor] = []
    rows: dict[str, tuple[int, int]] = {}
    offset = 0
    pad = teacher.config.pad_token_id or 0
    device = next(teacher.parameters()).device
    was_training = teacher.training
    teacher.eval()
    try:
        for split in splits:
            for start in range(0, len(split), batch_size):
                chunk = [split[i] for i in range(start, min(start + batch_size, len(split)))]
                longest = max(len(r["input_ids"]) for r in chunk)
                input_ids = torch.full((len(chunk), longest), pad, dtype=torch.long)
                attention = torch.zeros((len(chunk), longest), dtype=torch.long)
                for i, row in enumerate(chunk):
                    input_ids[i, : len(row["input_ids"])] = torch.as_tensor(row["input_ids"])
                    attention[i, : len(row["input_ids"])] = 1
                with torch.no_grad():
                    logits = teacher(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
                for i, row in enumerate(chunk):
                    key = row_hash(row["input_ids"])
                    mask = trained_mask(torch.as_tensor(row["labels"]))
                    if key in rows or not bool(mask.any()):
                        continue  # the same tokens twice: one entry serves both
                    logp = F.log_softmax(logits[i, : len(row["input_ids"])][mask.to(device)].float(), dim=-1)
                    values, indices = logp.topk(k, dim=-1)
                    ids_parts.append(indices.cpu().to(torch.int32))
                    logprob_parts.append(values.cpu())
                    rows[key] = (offset, int(mask.sum()))
                    offset += int(mask.sum())
                if progress is not None:
                    progress.update(len(chunk))
    finally:
        teacher.train(was_training)
    ids = torch.cat(ids_parts) if ids_parts else torch.zeros(0, k, dtype=torch.int32)
    logprobs = torch.cat(logprob_parts) if logprob_parts else torch.zeros(0, k)
    return TopK(ids, logprobs, rows, k, {"k": k, "vocab_size": teacher.config.vocab_size, "positions": offset})


def write_dump(folder: Path, store: TopK, meta: dict[str, Any]) -> None:
    """Write a dump folder atomically (a ``.partial`` folder renamed when complete)."""
    import shutil

    from safetensors.torch import save_file

    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    save_file({"ids": store.ids.to(torch.int32).contiguous(), "logprobs": store.logprobs.float().contiguous()},
              partial / "topk.safetensors")
    (partial / "index.json").write_text(json.dumps({**store.meta, **meta, "rows": store.rows}) + "\n")
    partial.rename(folder)


def cut_layers(model: Any, layers: int) -> list[int]:
    """Keep ``layers`` evenly spaced decoder layers of a Llama-style model (first and last kept), in place;
    return the kept indices."""
    body = getattr(model, model.base_model_prefix)
    stack = getattr(body, "layers", None)
    if stack is None:
        raise DataError(f"{type(model).__name__}: ft-kd cuts decoder stacks under .layers (Llama, Qwen, Mistral...); "
                        "this model has none")
    total = len(stack)
    if not 1 <= layers <= total:
        raise DataError(f"{layers} layers: expected 1 to {total} (the model has {total} layers)")
    keep = sorted({round(i * (total - 1) / max(layers - 1, 1)) for i in range(layers)}) if layers > 1 else [0]
    body.layers = torch.nn.ModuleList([stack[i] for i in keep])
    for index, layer in enumerate(body.layers):
        attention = getattr(layer, "self_attn", None)
        if attention is not None and hasattr(attention, "layer_idx"):
            attention.layer_idx = index
    model.config.num_hidden_layers = len(keep)
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [model.config.layer_types[i] for i in keep]
    return keep


def row_spans(batch: dict[str, Any]) -> list[tuple[int, int, int]]:
    """``(batch row, start, end)`` of every data row in a collated batch: one per padded row, several per
    packed row (where ``position_ids`` restart at 0)."""
    input_ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    positions = batch.get("position_ids")
    spans = []
    for b in range(input_ids.shape[0]):
        length = int(mask[b].sum()) if mask is not None and mask.dim() == 2 else input_ids.shape[1]
        if positions is not None and positions.dim() == 2:
            starts = torch.nonzero(positions[b, :length] == 0).flatten().tolist() or [0]
            bounds = [*starts, length]
            spans += [(b, s, e) for s, e in zip(bounds[:-1], bounds[1:]) if e > s]
        else:
            spans.append((b, 0, length))
    return spans


def batch_targets(store: TopK, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense ``[batch, seq, k]`` teacher ids and log-probabilities for a collated batch (zeros where nothing trains)."""
    input_ids, labels = batch["input_ids"], batch["labels"]
    shape = (*input_ids.shape, store.k)
    ids = torch.zeros(shape, dtype=torch.int64, device=input_ids.device)
    logprobs = torch.zeros(shape, dtype=torch.float32, device=input_ids.device)
    for b, start, end in row_spans(batch):
        positions = torch.nonzero(trained_mask(labels[b, start:end])).flatten()
        if positions.numel() == 0:  # padding (a pack's tail is a segment of its own): nothing to look up
            continue
        key = row_hash(input_ids[b, start:end])
        found = store.rows.get(key)
        if found is None:
            raise DataError("a training row has no teacher logprobs in method.logprobs: the dump was made for other "
                            "data or another tokenizer; run `ft kd dump` again with this config")
        offset, count = found
        if positions.numel() != count:
            raise DataError(f"a row trains {positions.numel()} positions but its dump holds {count}: the labels "
                            "differ from those the dump was made with (data options changed?); run `ft kd dump` again")
        ids[b, start + positions] = store.ids[offset:offset + count].to(ids.device, torch.int64)
        logprobs[b, start + positions] = store.logprobs[offset:offset + count].to(logprobs.device)
    return ids, logprobs
