"""Hook implementations of ft-diffusion: ``method=diffusion``, masked diffusion language models.

* ``prepare_model``: the mask token is added to the tokenizer and the embeddings when missing (never the
  padding or end-of-sequence token).
* ``post_model_load``: attention becomes bidirectional (``is_causal = False`` on the attention modules; the
  trainer and the sampler always pass an explicit 4-D mask: see ``attention.py``).
* ``create_trainer``: ``ft_trainer_class(DiffusionTrainer)``: the noising and the weighted masked loss.
* ``text_sampler``: ``ft generate``, ``ft chat`` and the default task's scoring generate by iterative
  unmasking for a run whose method is diffusion.
* ``post_trainer_create`` / ``post_train``: held-out masked-token accuracy at ``eval_mask_ratio`` before
  and after; ``callbacks``: sample answers every ``sample_every`` steps into ``samples.jsonl``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ft.api import ConfigError, PluginInfo, RunContext, gathered_weights, hookimpl, to_plain

FT_PLUGIN = PluginInfo(
    name="diffusion", contract="3.0",
    description="Masked diffusion language models, LLaDA-style (method=diffusion): training and unmasking sampler",
    capabilities=("trainer", "sampler"),
    traits={"method/diffusion": ("packable",)},
)
log = logging.getLogger("ft")


@dataclass
class DiffusionState:
    """This run's mask token id (added to the vocabulary when missing) and the masked-token accuracy before."""

    mask_id: int = -1
    before: float | None = None


@hookimpl
def config_schemas() -> dict[str, type]:
    from ft_diffusion.schema import SCHEMAS

    return dict(SCHEMAS)


#: The embedded default task's held-out sizes under diffusion (masked-token accuracy; generated answers).
DEFAULT_TASK_PRESET = {"data.val_size": 32, "data.task.eval_rows": 32}


@hookimpl
def config_defaults(choices: dict[str, str | None], config: dict[str, Any]) -> dict[str, Any] | None:
    """On the embedded default task only: hold out rows to score masked-token accuracy before and after."""
    if choices.get("method") == "diffusion" and choices.get("data") == "default_task":
        return dict(DEFAULT_TASK_PRESET)
    return None


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    if choices.get("method") != "diffusion":
        return
    method = cfg.method
    if method.min_mask_ratio > method.max_mask_ratio:
        raise ConfigError(f"method.min_mask_ratio={method.min_mask_ratio} is above method.max_mask_ratio="
                          f"{method.max_mask_ratio}")
    if not method.mask_token.strip():
        raise ConfigError("method.mask_token is empty: name the mask token (it is added to the tokenizer if missing)")


def mask_token_id(tokenizer: Any, mask_token: str) -> int | None:
    """The id of ``mask_token`` in ``tokenizer``, or ``None`` when the vocabulary lacks it."""
    vocab = tokenizer.get_vocab()
    return vocab.get(mask_token)


@hookimpl
def prepare_model(ctx: RunContext) -> None:
    """Add the mask token (tokenizer and embeddings) when the vocabulary lacks it."""
    tokenizer, mask = ctx.tokenizer, ctx.cfg.method.mask_token
    mask_id = mask_token_id(tokenizer, mask)
    if mask_id is None:
        tokenizer.add_tokens([mask], special_tokens=True)
        mask_id = mask_token_id(tokenizer, mask)
        assert mask_id is not None, "a token just added has an id"
        rows = ctx.model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > rows:
            ctx.model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        log.info("diffusion: added the mask token %s (id %d) to the tokenizer and embeddings", mask, mask_id)
    reserved = {tokenizer.pad_token_id: "padding", tokenizer.eos_token_id: "end-of-sequence"}
    if mask_id in reserved:
        raise ConfigError(f"method.mask_token={mask!r} is the tokenizer's {reserved[mask_id]} token; the mask must be a "
                          "token of its own (the default <|mdm_mask|> is added when missing)")
    ctx.state(DiffusionState).mask_id = mask_id


@hookimpl
def post_model_load(ctx: RunContext) -> None:
    from ft_diffusion.attention import make_bidirectional

    if ctx.cfg.method.attention == "bidirectional":
        count = make_bidirectional(ctx.model)
        log.info("diffusion: bidirectional attention (%d attention modules, explicit 4-D masks)", count)
    else:
        log.info("diffusion: causal attention (method.attention=causal, an ablation)")


def _settings(ctx: RunContext) -> Any:
    from ft_diffusion.trainer import Settings

    return Settings.from_config(ctx.cfg.method, ctx.state(DiffusionState).mask_id, ctx.tokenizer.eos_token_id)


def _pad_id(ctx: RunContext) -> int:
    tokenizer = ctx.tokenizer
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _prompts(ctx: RunContext, count: int) -> list[list[int]]:
    """A few held-out prompts (the unlabelled start of each row) to sample answers for."""
    dataset = ctx.datasets.eval if ctx.datasets.eval is not None else ctx.datasets.train
    prompts = []
    for index in range(min(count, len(dataset))):
        row = dataset[index]
        first = next((i for i, label in enumerate(row["labels"]) if label != -100), len(row["labels"]))
        prompts.append(list(row["input_ids"][: first if first > 0 else min(8, len(row["input_ids"]))]))
    return prompts


@hookimpl
def callbacks(ctx: RunContext) -> list[Any]:
    from ft_diffusion.trainer import samples_callback

    every = ctx.cfg.method.sample_every
    if not every:
        return []
    sample = text_sampler(to_plain(ctx.cfg.method), ctx.model, ctx.tokenizer)
    return [samples_callback(ctx, sample, _prompts(ctx, ctx.cfg.method.sample_prompts), every)]


@hookimpl
def create_trainer(ctx: RunContext) -> Any:
    from ft_trainer.api import ft_trainer_class

    from ft_diffusion.trainer import trainer_class

    return ft_trainer_class(trainer_class())(
        model=ctx.model, args=ctx.args, train_dataset=ctx.datasets.train, eval_dataset=ctx.datasets.eval,
        data_collator=ctx.data_collator, processing_class=ctx.tokenizer, callbacks=ctx.callbacks, ft_ctx=ctx,
        diffusion=_settings(ctx))


@hookimpl
def text_sampler(method_config: dict[str, Any], model: Any, tokenizer: Any) -> Any:
    """Iterative unmasking for a model trained with method=diffusion (see ``sampler.py``)."""
    from ft_diffusion.attention import make_bidirectional
    from ft_diffusion.sampler import SamplerOptions, generate
    from ft_diffusion.schema import DiffusionConfig

    if method_config.get("name") != "diffusion":
        return None
    defaults = DiffusionConfig()
    mask = method_config.get("mask_token") or defaults.mask_token
    mask_id = mask_token_id(tokenizer, mask)
    if mask_id is None:
        raise ConfigError(f"this diffusion model's tokenizer has no mask token {mask!r}; was it saved by an ft diffusion run?")
    if method_config.get("attention", "bidirectional") == "bidirectional":
        make_bidirectional(model)
    options = {**vars(defaults.generation), **(method_config.get("generation") or {})}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    shift = bool(method_config.get("shift_logits", defaults.shift_logits))

    def sample(prompt_ids: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        settings = SamplerOptions(gen_length=max_new_tokens, steps=min(int(options["steps"]), max_new_tokens),
                                  block_length=int(options["block_length"]), temperature=float(options["temperature"]),
                                  remasking=str(options["remasking"]), shift_logits=shift)
        return generate(model, prompt_ids, mask_id, settings, pad_id)

    return sample


@hookimpl
def post_trainer_create(ctx: RunContext) -> None:
    from ft_diffusion.trainer import masked_accuracy

    if ctx.datasets.eval is None:
        return
    state = ctx.state(DiffusionState)
    log.info("diffusion: masked-token accuracy on %d held-out rows at mask ratio %.2f...", len(ctx.datasets.eval),
             ctx.cfg.method.eval_mask_ratio)
    with gathered_weights(ctx):  # every rank measures, together (ZeRO-3 gathers the partitioned weights)
        state.before = masked_accuracy(ctx.model, ctx.datasets.eval, _pad_id(ctx), _settings(ctx),
                                          ctx.cfg.method.eval_mask_ratio)


@hookimpl
def post_train(ctx: RunContext, metrics: dict[str, Any]) -> None:
    from ft_diffusion.trainer import masked_accuracy

    state = ctx.state(DiffusionState)
    if ctx.datasets.eval is None:
        return
    with gathered_weights(ctx):
        after = masked_accuracy(ctx.model, ctx.datasets.eval, _pad_id(ctx), _settings(ctx),
                                ctx.cfg.method.eval_mask_ratio)
    metrics["masked_accuracy_after"] = after
    line = f"Diffusion: held-out masked-token accuracy at mask ratio {ctx.cfg.method.eval_mask_ratio:.2f}: "
    if state.before is not None:
        metrics["masked_accuracy_before"] = state.before
        line += f"{state.before:.3f} before, "
    ctx.report_lines.append(line + f"{after:.3f} after ({len(ctx.datasets.eval)} rows)")


@hookimpl(optionalhook=True)
def axolotl_keys() -> dict[str, Any]:
    """Axolotl's keys for this plugin (ft-axolotl): ``ft_diffusion/axolotl.py``."""
    from ft_diffusion.axolotl import AXOLOTL_KEYS

    return AXOLOTL_KEYS
