"""The ft hook contract: every hook a plugin may implement, and how results combine.

This module is the single contract between the kernel and plugins. A plugin is a Python module that
carries a ``FT_PLUGIN`` declaration (see :class:`ft.plugins.PluginInfo`) and functions decorated with
``@ft.hookimpl`` whose names match the specs below. ``pm.check_pending()`` rejects an implementation
that has no spec here, and a test rejects a spec without a docstring.

Lifecycle of ``ft run`` (each step names the hooks it calls)::

    compose config (Hydra)                          config_schemas, validate_config
    load tokenizer                                  load_tokenizer
    load + format data                              dataset_formats, prepare_dataset
    pre_model_load -> load model                    pre_model_load, load_model
    post_model_load (adapters wrap here)            post_model_load
    reference / teacher model                       load_reference_model
    build trainer                                   training_args, collator, batch_sampler,
                                                    callbacks, create_trainer
    post_trainer_create                             post_trainer_create
    train (loss inside compute_loss)                run_training, loss, optimizer, lr_scheduler
    post_train -> save                              post_train, save_model, post_save

How results combine, using pluggy's semantics on purpose:

* ``firstresult`` hooks answer "who builds X" (the trainer, the loss, the optimizer, the collator). The
  first non-``None`` result wins; the kernel's builtin implementations are registered ``trylast`` so
  they are the fallback. Two *active* plugins that both declare the same capability in
  ``FT_PLUGIN.capabilities`` is a config error before anything loads, never a silent winner.
* collected hooks (the default) return a list with one result per implementation: contributions such
  as callbacks, training-argument fragments, dataset formats, CLI subcommands.
* ``wrapper=True`` implementations may wrap any hook, for example ``run_training`` to profile it.

Only *active* plugins are registered while a run executes: a plugin (builtin or installed) is active
when it declares ``always_active=True`` or when the config selects one of the options it provides
(``adapter=lora`` activates the plugin that provides ``adapter/lora``), plus every plugin an active
one ``requires``. An installed plugin that the config does not select has no effect at all. The
config-time hooks (``config_schemas``, ``cli_commands``) are asked of every installed plugin.

Hooks that receive ``ctx`` get the :class:`ft.context.RunContext` of the run: the composed config
(``ctx.cfg``), the selected options (``ctx.choices``), the run folder, and the objects built so far
(``ctx.tokenizer``, ``ctx.model``, ``ctx.datasets``, ``ctx.trainer``...). Hooks may read and set its
attributes; the docstring of each hook says which attribute it is expected to set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps `ft validate` free of torch
    from omegaconf import DictConfig

    from ft.context import RunContext

hookspec = pluggy.HookspecMarker("ft")


# --------------------------------------------------------------------------------------------------
# Config and command line (called without torch being imported)
# --------------------------------------------------------------------------------------------------


@hookspec
def config_schemas() -> dict[str, type]:
    """Declare typed schemas for the config options this plugin provides.

    When: at validation, before any model or data loads (``ft validate``, ``ft run``).
    Returns: a dict mapping ``"group/option"`` (for example ``"adapter/lora"``) to a dataclass whose
    fields are the option's keys with type hints and defaults. ``Literal[...]`` fields are enums;
    fields whose metadata has ``{"path": True}`` must name an existing file or folder.
    Combine: collected; the kernel merges the dicts. The same key from two plugins is an error.
    Must not import torch or other heavy libraries.
    """


@hookspec
def validate_config(cfg: DictConfig, choices: dict[str, str | None]) -> None:
    """Check cross-field rules of the composed config that a schema cannot express.

    When: after schema validation, before any model or data loads.
    Receives: the composed, resolved config and the selected option of every group
    (``{"adapter": "lora", "method": "sft", ...}``).
    Returns: nothing; raise :class:`ft.errors.ConfigError` with one line naming the key, the value
    and what is expected. Combine: collected; every implementation runs.
    Must not import torch or other heavy libraries.
    """


@hookspec
def cli_commands() -> list[Any]:
    """Contribute extra ``ft`` subcommands (``ft merge``, ``ft chat``, ``ft preprocess``...).

    When: when the ``ft`` command builds its argument parser.
    Returns: a list of :class:`ft.cli.Command` (name, help, ``add_arguments(parser)``,
    ``run(args) -> int``). Combine: collected; two commands with the same name is a plugin error.
    Keep imports inside ``run`` so that ``ft --help`` stays fast.
    """


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


@hookspec
def dataset_formats() -> dict[str, Any]:
    """Contribute named dataset formats (``alpaca``, ``chat_template``, ...).

    When: when the data stage resolves ``data.format`` (and each dataset's own ``format``).
    Returns: a dict mapping a format name to a callable that the data plugin documents (it receives
    a row, the tokenizer and the format options and returns ``input_ids`` and ``labels``, with -100
    on masked positions). Combine: collected; the same name from two plugins is an error.
    """


@hookspec(firstresult=True)
def prepare_dataset(ctx: RunContext) -> Any:
    """Load, format and tokenize the training (and evaluation) data.

    When: after the tokenizer is loaded, before ``pre_model_load``.
    Receives: ``ctx`` with ``ctx.tokenizer`` set.
    Returns: a :class:`ft.context.DatasetBundle` (``train`` and optional ``eval``); the kernel stores
    it in ``ctx.datasets``. Combine: firstresult; the builtin data plugin is the fallback, a method
    plugin that needs rows in its own shape (preference pairs) provides the ``dataset`` capability.
    """


@hookspec(firstresult=True)
def collator(ctx: RunContext) -> Any:
    """Build the data collator that turns tokenized rows into batches.

    When: while the trainer is built. Returns: a callable ``list[row] -> batch dict`` or ``None``.
    Combine: firstresult (capability ``collator``); the builtin pads and keeps labels -100 on padding.
    """


@hookspec(firstresult=True)
def batch_sampler(ctx: RunContext, dataset: Any, split: str) -> Any:
    """Take over how a split is batched (sample packing: several rows per sequence).

    When: while the trainer is built, after ``collator``, once for ``split="train"`` and once for
    ``split="eval"`` when there is an evaluation set (``dataset`` is that split). Returns:
    :class:`ft.context.Batching` (a ``torch.utils.data.Sampler`` yielding batches, and optionally the
    dataset view the ``DataLoader`` reads each batch item from), or ``None`` for the trainer's default
    sampler. The sampler must be rank-aware (every rank the same number of batches) and should have
    ``set_epoch``; the kernel's trainer builds the ``DataLoader`` from it and keeps accelerate from
    sharding it again. Combine: firstresult (capability ``batch_sampler``).
    """


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def load_tokenizer(ctx: RunContext) -> Any:
    """Load the tokenizer named by ``model.tokenizer`` (or ``model.name_or_path``).

    When: first step of the run, before data. Returns: a ``PreTrainedTokenizerBase``; the kernel
    stores it in ``ctx.tokenizer``. Combine: firstresult; the builtin loader is the fallback.
    """


@hookspec
def pre_model_load(ctx: RunContext) -> dict[str, Any] | None:
    """Prepare the model load: apply patches and contribute ``from_pretrained`` keyword arguments.

    When: after data is prepared, just before the model loads. Use it for a quantization config
    (QLoRA), an attention implementation, or a kernel patch (Liger, Cut Cross Entropy); a plugin
    that patches a library says so in its README.
    Returns: a dict of keyword arguments for ``from_pretrained`` (or ``None``).
    Combine: collected; the kernel merges the dicts, and two plugins setting the same key to
    different values is a plugin error.
    """


@hookspec(firstresult=True)
def load_model(ctx: RunContext, load_kwargs: dict[str, Any]) -> Any:
    """Load the model to train.

    Receives: the merged ``from_pretrained`` keyword arguments from ``pre_model_load``.
    Returns: a ``PreTrainedModel``; the kernel stores it in ``ctx.model``.
    Combine: firstresult (capability ``model_loader``); the builtin loader is the fallback.
    """


@hookspec
def post_model_load(ctx: RunContext) -> None:
    """Transform the loaded model in place on ``ctx``: adapters wrap it here.

    When: right after ``load_model``. An adapter plugin replaces ``ctx.model`` (for example with a
    ``PeftModel``) and may prepare it for k-bit training. Returns: nothing.
    Combine: collected; implementations run in pluggy order (``tryfirst``/``trylast`` to order).
    """


@hookspec(firstresult=True)
def load_reference_model(ctx: RunContext, role: str) -> Any:
    """Provide a frozen auxiliary model: a preference method's reference or a distillation teacher.

    When: after ``post_model_load``, if the active method asks for one (``role`` is ``"reference"``
    or ``"teacher"``). Returns: a model in eval mode with gradients off, or ``None`` when no separate
    copy is needed (with an adapter, the reference is the base with the adapter disabled).
    Combine: firstresult.
    """


# --------------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------------


@hookspec
def training_args(ctx: RunContext) -> dict[str, Any] | None:
    """Contribute fragments of the training arguments (FSDP/DeepSpeed, a method's own fields).

    When: before ``create_trainer``. The kernel starts from ``trainer`` and ``optim`` config groups.
    Returns: a dict of keyword arguments for the trainer's arguments class, or ``None``.
    Combine: collected and merged into ``ctx.training_args``; two plugins setting the same key to
    different values is a plugin error.
    """


@hookspec
def callbacks(ctx: RunContext) -> list[Any] | None:
    """Contribute ``transformers.TrainerCallback`` instances (loggers, evaluators, profilers).

    When: while the trainer is built. Returns: a list of callbacks or ``None``.
    Combine: collected; every callback is added to the trainer.
    """


@hookspec(firstresult=True)
def create_trainer(ctx: RunContext) -> Any:
    """Build the trainer for the selected method.

    When: after the model, datasets, training arguments, collator and callbacks are ready
    (``ctx.training_args``, ``ctx.callbacks``, ``ctx.data_collator``...). Returns: a
    ``transformers.Trainer`` (or subclass, such as a TRL trainer); the kernel stores it in
    ``ctx.trainer``. Combine: firstresult (capability ``trainer``); builtin SFT is the fallback.
    A method plugin should use :func:`ft.training.ft_trainer_class` to keep the ``loss``,
    ``optimizer`` and ``lr_scheduler`` hooks working on top of its own trainer class.
    """


@hookspec
def post_trainer_create(ctx: RunContext) -> None:
    """Inspect or adjust the trainer before training starts (``ctx.trainer`` is set).

    When: right after ``create_trainer``. Use it to add callbacks, measure a "before" score, or check
    the trainer's state. Returns: nothing. Combine: collected.
    """


@hookspec(firstresult=True)
def loss(ctx: RunContext, model: Any, inputs: dict[str, Any], return_outputs: bool,
         num_items_in_batch: Any) -> Any:
    """Compute the training loss in place of the model's own (Cut Cross Entropy, distillation...).

    When: inside the trainer's ``compute_loss`` for every batch, on trainers built from
    :func:`ft.training.ft_trainer_class`.
    Receives: the model, the batch, whether the caller wants ``(loss, outputs)``, and the number of
    trained tokens in the whole gradient-accumulation step (for correct token averaging).
    Returns: a scalar tensor, or ``(loss, outputs)`` when ``return_outputs``; ``None`` to use the
    model's own loss. Combine: firstresult (capability ``loss``).
    """


@hookspec(firstresult=True)
def optimizer(ctx: RunContext, model: Any) -> Any:
    """Build the optimizer. Returns a ``torch.optim.Optimizer`` or ``None`` for the trainer's own.

    When: when the trainer creates its optimizer. Combine: firstresult (capability ``optimizer``).
    """


@hookspec(firstresult=True)
def lr_scheduler(ctx: RunContext, optimizer: Any, num_training_steps: int) -> Any:
    """Build the learning-rate scheduler, or ``None`` for the trainer's own.

    When: when the trainer creates its scheduler. Combine: firstresult (capability ``scheduler``).
    """


@hookspec(firstresult=True)
def run_training(ctx: RunContext) -> Any:
    """Run the training loop of ``ctx.trainer`` and return its ``TrainOutput``.

    When: after ``post_trainer_create``. The builtin calls ``trainer.train()`` (resuming when
    ``run.resume_from`` is set). Wrap it with ``@hookimpl(wrapper=True)`` to time or profile
    training. Combine: firstresult.
    """


@hookspec
def post_train(ctx: RunContext, metrics: dict[str, Any]) -> None:
    """Look at the trained model before it is saved: final evaluations, reports, summaries.

    Receives: the final training metrics (``train_loss``, runtime...). A plugin may add entries to
    ``metrics``; they end up in the run's ``summary.json``. Returns: nothing. Combine: collected.
    """


@hookspec(firstresult=True)
def save_model(ctx: RunContext, output_dir: str) -> Any:
    """Save the final model into ``output_dir`` in Hugging Face format (safetensors).

    Returns: ``True`` once saved, or ``None`` to let the next implementation (finally the builtin,
    which calls ``trainer.save_model`` and saves the tokenizer) do it. Combine: firstresult.
    """


@hookspec
def post_save(ctx: RunContext, output_dir: str) -> None:
    """React to the final model being saved in ``output_dir`` (write a model card, a merge hint).

    Returns: nothing. Combine: collected.
    """
