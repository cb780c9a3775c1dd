"""The ft hook contract: every hook a plugin may implement, when it runs, and how results combine.

This module is the single contract between the kernel and plugins; docs/plugins.md explains each hook
with an example and docs/architecture.md lists the lifecycle of ``ft run`` in order. A plugin is a module
with an ``FT_PLUGIN = ft.api.PluginInfo(...)`` declaration and functions marked ``@ft.api.hookimpl``
whose names match the specs below; an implementation without a spec is a load error.

Results combine with pluggy's semantics: ``firstresult`` hooks answer "who builds X", each mapped to a
capability (:data:`CAPABILITIES`) that the implementing plugin must declare and that two active plugins
cannot share (builtin ``trylast`` fallbacks claim nothing); collected hooks call every implementation
(contributions, or in-place steps in pluggy order); ``@hookimpl(wrapper=True)`` wraps any hook. Only the
*active* plugins take part in a run (``always_active``, a selected option, or required by an active one);
config-time hooks (``config_schemas``, ``cli_commands``, ``command_arguments``, ``dataset_formats``,
``run_sweep``) are asked of every installed plugin. Hooks that receive ``ctx`` get the :class:`ft.context.RunContext`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps `ft validate` free of torch
    from ft.context import LossCall, LossResult, RunContext

hookspec = pluggy.HookspecMarker("ft")

#: The version of this contract. A plugin declares the one it was written for (``PluginInfo.contract``);
#: another major version cannot load. The major changes when a hook is removed or its arguments change.
CONTRACT_VERSION = "3.0"

#: The capability each ``firstresult`` hook claims (see ``PluginInfo.capabilities``).
CAPABILITIES: dict[str, str] = {
    "load_tokenizer": "tokenizer_loader",
    "prepare_dataset": "dataset",
    "training_args_class": "trainer",
    "create_trainer": "trainer",
    "load_model": "model_loader",
    "load_reference_model": "reference_loader",
    "collator": "collator",
    "batch_sampler": "batch_sampler",
    "loss": "loss",
    "run_training": "training_loop",
    "save_model": "model_saver",
    "text_sampler": "sampler",
    "load_for_inference": "inference_loader",
    "run_sweep": "sweeper",
}

#: The "who builds X" hooks every run calls: a run in which no active plugin implements one of them is refused
#: at ``ft validate`` (a builtin plugin left out with ``-p no:NAME``).
REQUIRED_HOOKS: tuple[str, ...] = ("load_tokenizer", "prepare_dataset", "training_args_class", "load_model",
                                   "create_trainer", "run_training", "save_model")

#: Traits a method option declares (``PluginInfo.traits``) and other plugins require
#: (``PluginInfo.requires_traits``), instead of naming methods.
METHOD_TRAITS: dict[str, str] = {
    "packable": "trains on tokenized rows (input_ids, labels) with a token-summed loss: rows may share a sequence",
    "token_loss": "its loss is the next-token cross entropy of model(**inputs) on labels: a fused kernel may compute it",
    "computes_own_logits": "its trainer runs the model and builds its loss itself (pairs, rollouts): loss kernels cannot see it",
    "needs_reference": "asks load_reference_model(role='reference') for a frozen copy of the starting model",
    "needs_teacher": "asks load_reference_model(role='teacher') for another, frozen model",
    "generates": "generates text during training (online RL)",
}


# --------------------------------------------------------------------------------------------------
# Config and command line (called without torch being imported)
# --------------------------------------------------------------------------------------------------


@hookspec
def config_schemas() -> dict[str, type]:
    """Declare typed schemas for the config options this plugin provides.

    When: at validation, before any model or data loads (``ft validate``, ``ft run``).
    Returns: a dict mapping ``"group/option"`` (for example ``"adapter/myadapter"``) to a dataclass whose
    fields are the option's keys with type hints and defaults. ``Literal[...]`` fields are enums;
    ``ft.api.bounded(default, ge=..., gt=..., le=..., lt=...)`` fields carry range bounds (NaN is
    never in range); ``ft.api.path_field()`` fields must name an existing file or folder;
    ``ft.api.named(default, registry="dataset_formats")`` fields must name an entry of that collected
    hook's result. After validation every hook sees the section as an instance of this dataclass.
    Combine: collected; the kernel merges the dicts (the same key from two plugins is an error).
    Must not import torch or other heavy libraries.
    """


@hookspec
def config_defaults(choices: dict[str, str | None], config: dict[str, Any]) -> dict[str, Any] | None:
    """Contribute default values that depend on what else is selected (an adapter's learning rate).

    When: while the config is composed, before validation. Receives: the selected option of every
    group and the composed config as plain data (unvalidated). Returns: ``{"optim.lr": 2e-4}``, dotted
    keys to values, or ``None``. The kernel sets these values on the composed config as a layer
    above every config file and below the command line: a value the user types wins, and
    ``config.yaml``, ``run.json`` (``plugin_defaults``), the model card and the experiment loggers all hold the
    value that trains. Values only, never a group's option. Combine: collected over the active
    plugins; two plugins giving the same key different values is a plugin error.
    Must not import torch or other heavy libraries.
    """


@hookspec
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    """Check cross-field rules of the composed config that a schema cannot express.

    When: after schema validation, before any model or data loads.
    Receives: the typed, validated config (``cfg.trainer.micro_batch_size`` is an int) and the selected
    option of every group (``{"adapter": "myadapter", "method": "mymethod", ...}``).
    Returns: nothing; raise :class:`ft.api.ConfigError` with one line naming the key, the value and
    what is expected. Combine: collected; every active plugin's implementation runs.
    Must not import torch or other heavy libraries.
    """


@hookspec
def cli_commands() -> list[Any]:
    """Contribute extra ``ft`` subcommands (``ft merge``, ``ft chat``, ``ft preprocess``...).

    When: when the ``ft`` command builds its argument parser (every installed plugin is asked).
    Returns: a list of :class:`ft.api.Command` (name, help, ``run(args) -> int``,
    ``add_arguments(parser)``). Combine: collected; two commands with the same name is a plugin error.
    Keep imports inside ``run`` so that ``ft --help`` stays fast.
    """


@hookspec
def command_arguments(command: str, args: list[str], p_flags: list[str]) -> list[str] | None:
    """Turn options this plugin adds to ``ft run``, ``ft validate`` and ``ft config show`` into overrides
    (a plugin that reads another tool's config file: ``--mytool FILE`` becomes its overrides).

    When: before the arguments are read as overrides (every installed plugin is asked). Receives: the
    command, its arguments and the global ``-p`` flags. Returns: ``args`` with this plugin's options replaced (by overrides placed
    first, so that overrides typed after them win), or ``None`` when none of its options is present.
    Combine: collected; ft asks again with the new arguments until every plugin returns ``None``.
    A mistake is an :class:`ft.api.FtUserError` (one line, exit 2).
    """


@hookspec
def dataset_formats() -> dict[str, Any]:
    """Contribute named dataset formats (``chat_template``, ``qa``, ...).

    When: at validation (``data.format`` and each dataset's ``format`` must name one) and when the
    data stage formats rows; asked of every installed plugin (``ctx.installed_pm`` at run time). Returns: a dict mapping a format name to a callable
    ``(row, tokenizer, options) -> {"input_ids", "labels"}`` with -100 on masked positions
    (docs/data.md). Combine: collected; the same name from two plugins is an error. Return the
    callables without importing torch.
    """


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def load_tokenizer(ctx: RunContext) -> Any:
    """Load the tokenizer named by ``model.tokenizer`` (or ``model.name_or_path``).

    When: first step of the run, before data. Returns: a ``PreTrainedTokenizerBase``; the kernel
    stores it in ``ctx.tokenizer``. Combine: firstresult (capability ``tokenizer_loader``); the
    builtin loader is the fallback.
    """


@hookspec(firstresult=True)
def prepare_dataset(ctx: RunContext) -> Any:
    """Load, format and tokenize the training (and evaluation) data.

    When: after the tokenizer is loaded, before the training arguments and the model. Every rank
    calls it; the builtin data stage tokenizes on rank 0 first and the others read its cache.
    Returns: a :class:`ft.api.DatasetBundle` (``train`` and optional ``eval``); the kernel stores it
    in ``ctx.datasets``. Combine: firstresult (capability ``dataset``); the builtin data stage is the
    fallback, a method that needs rows in its own shape (pairs, prompts) takes it over.
    """


@hookspec(firstresult=True)
def collator(ctx: RunContext) -> Any:
    """Build the data collator that turns a list of rows into a batch.

    When: after the model is ready (a collator may check itself on the real model). Returns: a
    callable ``list[row] -> batch dict`` or ``None``. Combine: firstresult (capability
    ``collator``); the builtin pads and keeps labels -100 on padding. Per-batch changes that should
    compose with any collator belong in ``process_batch`` instead.
    """


@hookspec(firstresult=True)
def batch_sampler(ctx: RunContext, dataset: Any, split: str) -> Any:
    """Take over how a split is batched (sample packing: several rows per sequence).

    When: while the trainer is built, after ``collator``, once for ``split="train"`` and once for
    ``split="eval"`` when there is an evaluation set (``dataset`` is that split). Returns:
    :class:`ft.api.Batching` (a ``torch.utils.data.Sampler`` yielding batches, and optionally the
    dataset view the ``DataLoader`` reads each batch item from), or ``None`` for the trainer's own.
    The sampler must be rank-aware (``ctx.world_size``, ``ctx.rank``: every rank the same number of
    batches) and should have ``set_epoch``; the kernel's trainer builds the ``DataLoader`` from it
    and keeps accelerate from sharding it again. Combine: firstresult (capability ``batch_sampler``).
    """


# --------------------------------------------------------------------------------------------------
# Training arguments (before the model: a ZeRO-3 engine must exist when weights load)
# --------------------------------------------------------------------------------------------------


@hookspec
def training_args(ctx: RunContext) -> dict[str, Any] | None:
    """Contribute fragments of the training arguments (a distributed engine's settings, a method's fields).

    When: after the data, before the model loads. The kernel starts from the ``trainer``, ``optim``
    and ``run`` sections (``ft.api.base_training_args``). Returns: a dict of keyword arguments for the
    arguments class, or ``None``. Combine: collected and merged over the kernel's base; two plugins
    setting the same key to different values is a plugin error. The merged dict is
    ``ctx.training_args``; the object built from it is ``ctx.args``.
    """


@hookspec(firstresult=True)
def training_args_class(ctx: RunContext) -> type | None:
    """Name the arguments class the method's trainer takes (``trl.DPOConfig``...).

    When: right after ``training_args``; the kernel builds ``ctx.args = cls(**ctx.training_args)``
    before the model loads. Returns: a ``transformers.TrainingArguments`` subclass. Combine:
    firstresult (capability ``trainer``, with ``create_trainer``); the fallback is
    ``transformers.TrainingArguments``.
    """


# --------------------------------------------------------------------------------------------------
# Model, in ordered phases: patch -> load -> prepare -> adapt -> ready
# --------------------------------------------------------------------------------------------------


@hookspec
def pre_model_load(ctx: RunContext) -> dict[str, Any] | None:
    """Phase *patch*: apply library patches and contribute ``from_pretrained`` keyword arguments.

    When: after the training arguments exist, just before the model loads. Who belongs here:
    patches of library classes and functions before the model is built (a plugin that patches a
    library says so in its README and undoes it with ``ctx.add_cleanup``), a quantization config
    (a 4-bit ``BitsAndBytesConfig``), an attention implementation, a ``device_map``. Returns: a dict
    of ``from_pretrained`` keyword arguments, or ``None``.
    Combine: collected; merged, and two plugins setting the same key to different values is a plugin
    error.
    """


@hookspec(firstresult=True)
def load_model(ctx: RunContext, load_kwargs: dict[str, Any]) -> Any:
    """Phase *load*: load the model to train.

    Receives: the merged ``from_pretrained`` keyword arguments of ``pre_model_load``.
    Returns: a ``PreTrainedModel``; the kernel stores it in ``ctx.model``.
    Combine: firstresult (capability ``model_loader``); the builtin loader is the fallback.
    """


@hookspec
def prepare_model(ctx: RunContext) -> None:
    """Phase *prepare*: ready the loaded base for training, in place on ``ctx.model``.

    When: after ``load_model``, before adapters. Who belongs here: k-bit preparation
    (``prepare_model_for_kbit_training``), casts, gradient checkpointing, resizing embeddings for
    new tokens, kernels patched into the loaded instance (a kernel library's ``apply_*`` functions).
    A plugin may replace ``ctx.model``. Returns: nothing. Combine: collected, in order.
    """


@hookspec
def adapt_model(ctx: RunContext) -> None:
    """Phase *adapt*: wrap the prepared model with adapters so only adapter weights train.

    When: after ``prepare_model``. Who belongs here: adapters (PEFT's, for example), which replace
    ``ctx.model`` with a ``PeftModel``. Returns: nothing. Combine: collected, in order.
    """


@hookspec
def gather_weights(ctx: RunContext, model: Any) -> Any:
    """Make ``model``'s weights whole on every rank for a forward pass outside training.

    When: whenever a plugin scores, checks or samples with the model (``ft.api.gathered_weights(ctx)``),
    on every rank together. Who belongs here: an engine that partitions weights across ranks (it returns
    its own gathering context manager). Returns: a context manager the kernel enters around the
    block, or ``None`` when the weights are already whole. Combine: collected; every manager is entered.
    """


@hookspec
def post_model_load(ctx: RunContext) -> None:
    """Phase *ready*: the model is final; observe it (count parameters, log, check) without changing it.

    When: after ``adapt_model``, before the trainer is built. Returns: nothing. Combine: collected.
    """


@hookspec(firstresult=True)
def load_reference_model(ctx: RunContext, role: str, source: str | None, load_kwargs: dict[str, Any] | None) -> Any:
    """Provide a frozen auxiliary model: a method's frozen reference or a teacher.

    When: on demand, by the method plugin that needs one (``ctx.pm.hook.load_reference_model(...)``)
    after the model phases. Receives: ``role`` (``"reference"`` or ``"teacher"``), ``source``: a
    hub id or folder to load, or ``None`` for a frozen copy of the model as it starts training, and
    ``load_kwargs``: extra ``from_pretrained`` arguments for ``source`` (a ``quantization_config`` for a
    4-bit teacher) or ``None``.
    Returns: a model in eval mode with gradients off (the kernel stores it in
    ``ctx.reference_model``). Combine: firstresult (capability ``reference_loader``); the builtin
    loads ``source`` offline-first, or deep-copies ``ctx.model``.
    """


# --------------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------------


@hookspec
def callbacks(ctx: RunContext) -> list[Any] | None:
    """Contribute ``transformers.TrainerCallback`` instances (loggers, evaluators, profilers).

    When: while the trainer is built. Returns: a list of callbacks or ``None``. Combine: collected;
    every callback is added to the trainer. Callbacks run on every rank: write files only where
    ``state.is_world_process_zero``.
    """


@hookspec(firstresult=True)
def create_trainer(ctx: RunContext) -> Any:
    """Build the trainer for the selected method.

    When: after the model, datasets, ``ctx.args``, collator and callbacks are ready. Returns: a
    ``transformers.Trainer`` (or subclass, such as a TRL trainer) built from
    ``ft.api.ft_trainer_class(Base)`` with ``ft_ctx=ctx``, so that ``process_batch``, ``loss``,
    and ``batch_sampler`` work on it; the kernel stores it in
    ``ctx.trainer``. Combine: firstresult (capability ``trainer``); the builtin method is the fallback.
    """


@hookspec
def post_trainer_create(ctx: RunContext) -> None:
    """Inspect or adjust the trainer before training starts (``ctx.trainer`` is set).

    When: right after ``create_trainer``, on every rank. Use it to measure a "before" score or check
    the trainer's state. Returns: nothing. Combine: collected.
    """


@hookspec
def process_batch(ctx: RunContext, batch: dict[str, Any], training: bool) -> None:
    """Change a collated batch in place before the loss sees it (noise, teacher targets).

    When: inside the trainer's ``compute_loss``, for every batch, after the collator (whichever
    plugin owns it, a packing collator included) and before ``loss``; ``training`` is False on evaluation
    batches. Receives: the batch dict (tensors already on the model's device). Returns: nothing;
    add, replace or remove keys in ``batch``. Combine: collected; every implementation runs, in
    pluggy order, each seeing the previous one's changes. A plugin that adds keys the model's
    ``forward`` does not take removes them in its ``loss`` wrapper.
    """


@hookspec(firstresult=True)
def loss(ctx: RunContext, call: LossCall) -> LossResult:
    """Compute one batch's loss: the method's own, replaced by a loss kernel, wrapped by extra terms.

    When: inside the trainer's ``compute_loss`` for every batch (training and evaluation), on
    trainers built from ``ft.api.ft_trainer_class``. Receives a :class:`ft.api.LossCall`:
    ``model``; ``inputs``, the batch after ``process_batch``, whose ``labels`` are *not* shifted
    (position i holds token i, -100 where nothing is trained; the causal LM loss predicts
    ``labels[:, 1:]`` from positions ``:-1``); ``num_items_in_batch``, the number of trained
    (shifted) label tokens to divide the summed token loss by: those of the whole optimizer step
    (gradient accumulation included, summed over ranks) on training batches, those of this batch on
    evaluation batches, ``None`` when the trainer does not count them or the model takes no loss
    keywords (the loss is then this batch's mean, which the trainer divides by the accumulation steps);
    ``token_loss_scale``, what a loss divided by ``num_items_in_batch`` is multiplied by (the ranks,
    when transformers averages tokens across devices); ``training``; ``return_outputs``;
    ``need_outputs``, which a wrapper sets before ``yield`` when it needs the inner loss's ``outputs``
    (the logits); and ``method_loss()``, which computes the method's own loss for the batch (with
    outputs when either flag asks for them).
    Returns: a :class:`ft.api.LossResult` (``loss``, optional ``outputs``, named ``parts`` that the
    trainer logs as ``loss/<name>``). Combine: firstresult (capability ``loss``). The builtin
    fallback returns ``call.method_loss()``; a loss kernel implements it plainly to replace that (it
    must ``requires_traits=("token_loss",)``; ``ft.api.fused_token_loss(call, linear_ce, who)``
    does everything but the fused function itself, exactly as the method would); a plugin adding a
    term implements it with ``@hookimpl(wrapper=True)``: ``result = yield``, then adds its term and
    a part.
    """


@hookspec(firstresult=True)
def run_training(ctx: RunContext) -> Any:
    """Run the training loop of ``ctx.trainer`` and return its ``TrainOutput``.

    When: after ``post_trainer_create``, on every rank. The builtin calls ``trainer.train()``
    (resuming when ``run.resume_from`` is set). To time or profile training, wrap it with
    ``@hookimpl(wrapper=True)`` (no capability needed). Combine: firstresult (capability
    ``training_loop``).
    """


@hookspec
def post_train(ctx: RunContext, metrics: dict[str, Any]) -> None:
    """Look at the trained model before it is saved: final evaluations, reports, summaries.

    When: after training, on every rank (write files only when ``ctx.is_main``). Receives: the final
    training metrics (``train_loss``, runtime...); a plugin may add entries to ``metrics``, which end
    up in the run's ``summary.json``. Returns: nothing. Combine: collected.
    """


@hookspec(firstresult=True)
def save_model(ctx: RunContext, output_dir: str) -> Any:
    """Save the final model into ``output_dir`` in Hugging Face format (safetensors).

    When: after ``post_train``, on every rank (gathering sharded weights is collective); only rank 0
    writes. Returns: ``True`` once saved. Combine: firstresult (capability ``model_saver``); the
    builtin writes through ``trainer.save_model`` into a temporary folder and renames it when complete.
    """


@hookspec(firstresult=True)
def run_sweep(session: Any, overrides: list[str], p_flags: list[str]) -> int | None:
    """Run ``ft run -m``: choose the jobs of a sweep, validate them, run them, report.

    When: ``ft run -m ...``, asked of every installed plugin (nothing is composed yet). Receives: the
    :class:`ft.api.Session`, the command's overrides (without ``-m``) and the global ``-p`` flags (launched
    jobs load the same plugins). Returns: the exit code (0 when every job finished). Combine: firstresult
    (capability ``sweeper``); a builtin plugin is the fallback.
    """


@hookspec(firstresult=True)
def text_sampler(method_config: dict[str, Any], model: Any, tokenizer: Any) -> Any:
    """Provide how a model trained with a method generates text, when it is not ``model.generate``.

    When: whenever ft generates with a run's model: ``ft generate`` and ``ft chat`` (asked of every
    installed plugin, with the run's ``method`` section from its ``config.yaml``; ``{}`` for a model
    folder outside a run) and the default task's held-out scoring (asked of the run's active plugins).
    Returns: ``None`` for a method the plugin does not know, else a callable ``sample(prompt_ids,
    max_new_tokens) -> list[list[int]]``: ``prompt_ids`` is a batch of token-id lists (the chat
    template already applied), the result one list of new token ids per prompt, which ft decodes and
    cuts at the end-of-sequence token. Who belongs here: methods whose models do not decode left to
    right (masked denoising). Combine: firstresult (capability ``sampler``).
    """


@hookspec(firstresult=True)
def load_for_inference(folder: Path, run_config: dict[str, Any], options: dict[str, Any]) -> Any:
    """Load a saved folder that ``from_pretrained`` alone cannot (an adapter without its base) to generate with.

    When: whenever ft generates with or scores a saved model outside a run (``ft generate``, ``ft chat``,
    ``ft eval``), asked of every installed plugin. Receives: the folder (a run's ``model/``, a checkpoint,
    any folder); ``run_config``, the resolved ``config.yaml`` of the run that saved it (``{}`` outside a
    run); ``options``: ``base`` (a base model the user named, or ``None``), ``load_kwargs`` (``dtype``,
    ``device_map`` for ``from_pretrained``) and ``full_precision_base`` (load a quantised base unquantised).
    Returns: ``(model, tokenizer_folder, description)`` with the model ready for inference, or ``None``
    for a folder the plugin does not know; a plain model folder needs no plugin. Combine: firstresult
    (capability ``inference_loader``).
    """


@hookspec
def post_save(ctx: RunContext, output_dir: str) -> None:
    """React to the final model being saved in ``output_dir`` (write a model card, a merge hint).

    When: on rank 0 only, after ``save_model`` and the run's outputs (``summary.json``, ``loss.png``), so a
    model card can cite them; ft's own card is written ``trylast``. Returns: nothing. Combine: collected.
    """
