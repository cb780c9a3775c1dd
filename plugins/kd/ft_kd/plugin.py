"""ft-kd's hooks: ``method=kd`` distils a teacher's next-token distribution into the student.

How it rides on ft's contract (no special case in the kernel):

* ``traits={"method/kd": ("packable", "token_loss", "needs_teacher")}``: packing and loss kernels accept it;
  ``requires=("sft",)``: the SFT trainer and data stage serve it, this plugin only adds to the loss.
* online teacher: ``load_reference_model(role="teacher", source=method.teacher)`` (the kernel's loader),
  loaded in ``post_model_load`` and checked to share the student's tokenizer;
* offline teacher: ``process_batch`` attaches the dumped top-k targets of each row to the batch (rows are
  found by their token ids, so any collator and multipack work);
* ``loss`` (a wrapper): ``ce_alpha * CE + kd_alpha * KD``, logged as ``loss/ce`` and ``loss/kd``;
* ``post_trainer_create`` / ``post_train``: held-out KL(teacher || student) before and after.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ft.api import ConfigError, PluginInfo, RunContext, hookimpl

FT_PLUGIN = PluginInfo(
    name="kd", contract="3.0",
    description="Knowledge distillation (method=kd): online teacher or offline top-k logprobs; ft kd dump, make-student",
    requires=("sft",),
    traits={"method/kd": ("packable", "token_loss", "needs_teacher")},
)

log = logging.getLogger("ft")
TARGET_KEYS = ("kd_topk_ids", "kd_topk_logprobs")


def _selected(choices: dict[str, str | None]) -> bool:
    return choices.get("method") == "kd"


def _self_teacher(method: Any) -> bool:
    return method.teacher == "self" and not method.logprobs


@dataclass
class KdState:
    """This run's teacher: an online model or an offline store of top-k log-probabilities; the KL before."""

    teacher: Any = None
    store: Any = None
    kl_before: float | None = None
    #: Parameters of the teacher and of the student, for the closing report.
    sizes: tuple[int, int] | None = None


@hookimpl
def prepare_model(ctx: RunContext) -> None:
    """``teacher=self``: the loaded model is the teacher: keep its top-k over the run's data, then cut it
    to ``student_layers`` layers, the student that trains (before adapters wrap it)."""
    if not _selected(ctx.choices) or not _self_teacher(ctx.cfg.method):
        return
    import sys

    from tqdm.auto import tqdm

    from ft.api import gathered_weights
    from ft_kd.store import cut_layers, teacher_topk

    method = ctx.cfg.method
    splits = [ctx.datasets.train] + ([ctx.datasets.eval] if ctx.datasets.eval is not None else [])
    log.info("kd: teacher = %s as loaded (%d layers); its top-%d over %d rows first", ctx.cfg.model.name_or_path,
             ctx.model.config.num_hidden_layers, method.top_k, sum(len(s) for s in splits))
    with tqdm(total=sum(len(s) for s in splits), desc="teacher top-k", unit="row", file=sys.stderr,
              disable=None if ctx.is_main else True) as bar, gathered_weights(ctx):
        store = teacher_topk(ctx.model, splits, method.top_k, progress=bar)
    store.meta["teacher"] = f"{ctx.cfg.model.name_or_path} (self)"
    total = ctx.model.config.num_hidden_layers
    teacher_size = sum(p.numel() for p in ctx.model.parameters())
    keep = cut_layers(ctx.model, method.student_layers)
    ctx.state(KdState).store = store
    ctx.state(KdState).sizes = (teacher_size, sum(p.numel() for p in ctx.model.parameters()))
    log.info("kd: student = the same model cut to %d of %d layers %s (%s parameters)", len(keep), total, keep,
             f"{sum(p.numel() for p in ctx.model.parameters()):,}")


@hookimpl
def config_defaults(choices: dict[str, str | None], config: dict[str, Any]) -> dict[str, Any] | None:
    """On the embedded default task, hold rows out so that the held-out KL to the teacher, what distillation
    lowers, is measured before and after (the task's own exact match is scored on its own held-out rows)."""
    return {"data.val_size": 32} if _selected(choices) and choices.get("data") == "default_task" else None


@hookimpl
def config_schemas() -> dict[str, type]:
    from ft_kd.schema import KdConfig

    return {"method/kd": KdConfig}


def local_vocab_size(name: str) -> int | None:
    """``vocab_size`` from a local model folder's config.json (None when unknown), without loading anything."""
    from ft_model.api import local_model_folder

    folder = local_model_folder(name)
    if folder is None or not (folder / "config.json").is_file():
        return None
    config = json.loads((folder / "config.json").read_text())
    return config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    if not _selected(choices):
        return
    method = cfg.method
    if method.logprobs and method.teacher not in (None, "self"):
        raise ConfigError(f"method.teacher={method.teacher!r} and method.logprobs={method.logprobs!r}: give one teacher, "
                          "a model (online) or a dump (offline)")
    if not method.logprobs and not method.teacher:
        raise ConfigError("method=kd needs a teacher: method.teacher=self (the model as loaded, distilled into a "
                          "cut copy), a model folder or hub id (online), or method.logprobs=<folder from `ft kd dump`>")
    if method.teacher_bits and (method.logprobs or method.teacher == "self"):
        raise ConfigError(f"method.teacher_bits={method.teacher_bits} quantises an online teacher (method.teacher=<model>); "
                          "with teacher=self or method.logprobs no teacher is loaded next to the student")
    if method.teacher_bits:
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError(f"method.teacher_bits={method.teacher_bits} loads the teacher through bitsandbytes, which "
                              "is not installed; install it with: pip install bitsandbytes")
    if method.teacher == "self" and not method.logprobs:
        return
    if method.teacher and not method.logprobs:
        from ft_model.api import resolve_model_path

        try:
            resolve_model_path(method.teacher) if method.teacher.startswith(("builtin:", "/", ".", "~")) else None
        except Exception as exc:  # noqa: BLE001 - the loader's own one-line reason
            raise ConfigError(str(exc).replace("model.name_or_path", "method.teacher")) from exc
        teacher_vocab, student_vocab = local_vocab_size(method.teacher), local_vocab_size(cfg.model.name_or_path)
        if teacher_vocab and student_vocab and teacher_vocab != student_vocab:
            raise ConfigError(f"method.teacher={method.teacher!r} has a vocabulary of {teacher_vocab} tokens and the student "
                              f"{student_vocab}: teacher and student must share the tokenizer")
    if method.logprobs:
        index = Path(method.logprobs) / "index.json"
        if not index.is_file():
            raise ConfigError(f"method.logprobs={method.logprobs!r}: not a `ft kd dump` folder (no index.json)")
        meta = json.loads(index.read_text())
        student_vocab = local_vocab_size(cfg.model.name_or_path)
        if student_vocab and meta.get("vocab_size") and int(meta["vocab_size"]) != student_vocab:
            raise ConfigError(f"method.logprobs={method.logprobs!r} was dumped with a vocabulary of {meta['vocab_size']} "
                              f"tokens, the student has {student_vocab}: teacher and student must share the tokenizer")


def teacher_quantization(bits: int | None) -> dict[str, Any] | None:
    """``from_pretrained`` arguments for a 4- or 8-bit teacher (bitsandbytes), or ``None``."""
    if bits is None:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)}
    return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_compute_dtype=torch.float32)}


def check_same_tokenizer(teacher_tokenizer: Any, student_tokenizer: Any, teacher: str) -> None:
    """Teacher and student must map the same strings to the same ids."""
    teacher_vocab, student_vocab = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    if teacher_vocab != student_vocab:
        raise ConfigError(f"method.teacher={teacher!r}: its tokenizer ({len(teacher_vocab)} tokens) differs from the "
                          f"student's ({len(student_vocab)} tokens); distillation needs the same vocabulary and ids")


@hookimpl
def post_model_load(ctx: RunContext) -> None:
    """Load the frozen teacher (online) or open the dumped targets (offline), once the student is ready."""
    if not _selected(ctx.choices):
        return
    method = ctx.cfg.method
    state = ctx.state(KdState)
    if _self_teacher(method):
        return  # the targets were kept in the prepare phase
    if method.logprobs:
        from ft_kd.store import TopK

        state.store = TopK.open(method.logprobs)
        log.info("kd: offline teacher %s (top-%d logprobs of %d rows)", state.store.meta.get("teacher"),
                 state.store.k, len(state.store.rows))
        return
    from transformers import AutoTokenizer

    from ft_model.api import from_pretrained_offline_first, resolve_model_path

    source = resolve_model_path(method.teacher)
    check_same_tokenizer(from_pretrained_offline_first(AutoTokenizer, source), ctx.tokenizer, method.teacher)
    teacher = ctx.pm.hook.load_reference_model(ctx=ctx, role="teacher", source=source,
                                               load_kwargs=teacher_quantization(method.teacher_bits))
    device = next(ctx.model.parameters()).device
    state.teacher = teacher if method.teacher_bits else teacher.to(device)
    log.info("kd: online teacher %s (%s parameters, frozen)", method.teacher,
             f"{sum(p.numel() for p in teacher.parameters()):,}")


@hookimpl
def process_batch(ctx: RunContext, batch: dict[str, Any], training: bool) -> None:
    """Offline: attach each row's dumped top-k teacher targets (found by the row's token ids)."""
    store = ctx.state(KdState).store if _selected(ctx.choices) else None
    if store is not None:
        from ft_kd.store import batch_targets

        batch[TARGET_KEYS[0]], batch[TARGET_KEYS[1]] = batch_targets(store, batch)


def teacher_logits_fn(teacher: Any, inputs: dict[str, Any]) -> Any:
    """A function giving the teacher's logits at chosen positions: one hidden-state pass, then the output
    projection chunk by chunk (so full teacher logits never exist for the whole batch)."""
    import torch

    body = getattr(teacher, teacher.base_model_prefix)
    head = teacher.get_output_embeddings()
    keys = ("input_ids", "attention_mask", "position_ids")
    with torch.no_grad():
        hidden = body(**{k: inputs[k] for k in keys if k in inputs}).last_hidden_state
    return lambda rows, cols: head(hidden[rows, cols])


def kd_term(ctx: RunContext, logits: Any, inputs: dict[str, Any], targets: tuple[Any, Any] | None, num_items: Any) -> Any:
    """The distillation term for one batch (offline targets when given, else the online teacher)."""
    from ft_kd.losses import full_kd_loss, topk_kd_loss

    method = ctx.cfg.method
    common = {"kind": method.loss, "temperature": method.temperature, "beta": method.beta, "chunk_size": method.chunk_size}
    if targets is not None:
        return topk_kd_loss(logits, targets[0], targets[1], inputs["labels"], num_items,
                            renormalize=method.renormalize, **common)
    teacher = ctx.state(KdState).teacher
    return full_kd_loss(logits, teacher_logits_fn(teacher, inputs), inputs["labels"], num_items, **common)


@hookimpl(wrapper=True)
def loss(ctx: RunContext, call: Any):
    """``ce_alpha * CE + kd_alpha * KD`` around whatever computes the cross entropy."""
    if not _selected(ctx.choices):
        return (yield)
    targets = None
    if TARGET_KEYS[0] in call.inputs:  # offline targets must not reach the model's forward
        targets = (call.inputs.pop(TARGET_KEYS[0]), call.inputs.pop(TARGET_KEYS[1]))
    call.need_outputs = True
    result = yield
    logits = result.outputs["logits"] if isinstance(result.outputs, dict) else result.outputs.logits
    method = ctx.cfg.method
    kd = kd_term(ctx, logits, call.inputs, targets, call.num_items_in_batch)
    ce = result.loss
    result.loss = method.ce_alpha * ce + method.kd_alpha * kd
    result.parts.update(ce=ce.detach(), kd=kd.detach())
    if not call.return_outputs:
        result.outputs = None
    return result


def held_out_kl(ctx: RunContext) -> float | None:
    """Mean forward KL(teacher || student) per trained token on the eval split (T = 1), or None."""
    import torch

    trainer = ctx.trainer
    if ctx.datasets.eval is None or not ctx.cfg.method.eval_kl:
        return None
    from ft_kd.losses import full_kd_loss, topk_kd_loss, trained_positions

    model = trainer.model
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    store = ctx.state(KdState).store
    try:
        with torch.no_grad():
            for batch in trainer.get_eval_dataloader():
                batch = {k: v.to(next(model.parameters()).device) if hasattr(v, "to") else v for k, v in batch.items()}
                trained = trained_positions(batch["labels"])[0].numel()
                logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
                if store is not None:
                    from ft_kd.store import batch_targets

                    ids, logprobs = batch_targets(store, batch)
                    value = topk_kd_loss(logits, ids, logprobs, batch["labels"], trained, renormalize=ctx.cfg.method.renormalize)
                else:
                    value = full_kd_loss(logits, teacher_logits_fn(ctx.state(KdState).teacher, batch), batch["labels"], trained)
                total += float(value) * trained
                count += trained
    finally:
        model.train(was_training)
    return total / max(count, 1)


@hookimpl
def post_trainer_create(ctx: RunContext) -> None:
    if _selected(ctx.choices):
        before = held_out_kl(ctx)
        ctx.state(KdState).kl_before = before
        if before is not None:
            log.info("kd: held-out KL(teacher || student) before training: %.4f", before)


@hookimpl
def post_train(ctx: RunContext, metrics: dict[str, Any]) -> None:
    if not _selected(ctx.choices):
        return
    after = held_out_kl(ctx)
    before = ctx.state(KdState).kl_before
    if after is None:
        return
    metrics["heldout_kl_before"], metrics["heldout_kl_after"] = before, after
    line = f"distillation: held-out KL(teacher || student) {before:.4f} -> {after:.4f} per trained token"
    sizes = ctx.state(KdState).sizes
    if sizes is not None:
        teacher, student = sizes
        metrics["teacher_parameters"], metrics["student_parameters"] = teacher, student
        line += f"; the student has {student:,} parameters, {student / teacher:.0%} of the teacher's {teacher:,}"
    ctx.report_lines.append(line)


@hookimpl
def cli_commands() -> list[Any]:
    from ft.api import Command
    from ft_kd import cli

    return [Command(name="kd", help="knowledge distillation tools: dump (teacher top-k logprobs), make-student",
                    run=cli.run, add_arguments=cli.add_arguments)]


@hookimpl(optionalhook=True)
def axolotl_keys() -> dict[str, Any]:
    """Axolotl's keys for this plugin (ft-axolotl): ``ft_kd/axolotl.py``."""
    from ft_kd.axolotl import AXOLOTL_KEYS

    return AXOLOTL_KEYS
