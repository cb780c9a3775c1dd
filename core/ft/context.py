"""The state of one run, handed to every lifecycle hook as ``ctx``, and the data types hooks exchange."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # typing only: importing the config engine here would cost every import of ft.context
    from pluggy import PluginManager

    from ft.schema import FtConfig

T = TypeVar("T")

#: The label of a position nothing is trained on (what ``labels`` hold for prompts and padding).
IGNORE_INDEX = -100


@dataclass
class DatasetBundle:
    """Datasets produced by the data stage: ``train`` and an optional ``eval`` split.

    ``stats`` holds counts the data stage measured (rows in, rows dropped and why, tokens).
    """

    train: Any
    eval: Any | None = None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batching:
    """How one split is batched when a plugin takes batching over (the ``batch_sampler`` hook).

    The trainer's ``DataLoader`` reads ``dataset[item]`` for every item of every batch ``sampler``
    yields; ``dataset`` defaults to the split itself. A sampler that yields groups of rows (packs)
    pairs with a dataset view that indexes by those groups.
    """

    sampler: Any
    dataset: Any = None


@dataclass
class LossResult:
    """What the ``loss`` hook returns: the scalar loss, the model outputs if asked for, and named parts.

    ``parts`` (``{"ce": tensor, "aux": tensor}``) are logged by the trainer as ``loss/<name>``, averaged
    over the logging interval; they are for reading, the optimiser only sees ``loss``.
    """

    loss: Any
    outputs: Any = None
    parts: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossCall:
    """One ``loss`` hook call (see ``ft.hookspecs.loss`` for what each field means exactly)."""

    model: Any
    inputs: dict[str, Any]
    num_items_in_batch: Any
    training: bool
    return_outputs: bool
    #: Computes the method's own loss for this batch (the trainer's ``compute_loss``).
    method_loss: Callable[[], LossResult]
    #: A wrapper sets this before ``yield`` when it needs ``outputs`` (the logits) from the inner loss.
    need_outputs: bool = False
    #: What the trainer multiplies a loss divided by ``num_items_in_batch`` by (the number of ranks when
    #: transformers averages tokens across devices, else 1). The method's own loss has it already; a loss
    #: kernel that divides by ``num_items_in_batch`` itself multiplies by it (``ft.api.fused_token_loss`` does).
    token_loss_scale: float = 1.0


@dataclass
class RunContext:
    """Everything a run has built so far; hooks read it and set the attribute their stage owns."""

    #: The typed, validated config: one dataclass instance per section (``cfg.optim.lr`` is a float).
    cfg: FtConfig
    choices: dict[str, str | None]
    run_dir: Path
    #: The active plugins' manager: lifecycle hooks go through it (``ctx.pm.hook.<name>(...)``).
    pm: PluginManager
    #: Every installed plugin's manager, for the config-time hooks (``dataset_formats``...).
    installed_pm: PluginManager | None = None
    #: How the trainer asks for a batch's loss: the ``loss`` hook of the active plugins, less the loss
    #: wrappers that do not serve the selected method (``PluginInfo.loss_wrapper_traits``).
    loss_hook: Callable[..., LossResult] | None = None
    #: Traits of the selected options, ``{"method/M": ("packable", "token_loss")}``.
    traits: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    tokenizer: Any = None
    #: What the data stage built (an empty bundle until then).
    datasets: DatasetBundle = field(default_factory=lambda: DatasetBundle(train=None))
    #: The merged ``training_args`` keywords, and the arguments object built from them before the model.
    training_args: dict[str, Any] = field(default_factory=dict)
    args: Any = None
    model: Any = None
    reference_model: Any = None
    data_collator: Any = None
    #: Plugin-built batching per split (``"train"``, ``"eval"``); absent: the trainer's own sampler.
    batching: dict[str, Batching] = field(default_factory=dict)
    callbacks: list[Any] = field(default_factory=list)
    trainer: Any = None
    train_output: Any = None
    #: Why training stopped early (a signal's name), or ``None``: the run is then saved to resume.
    interrupted: str | None = None
    #: Each plugin's own state for this run, one instance per class (see :meth:`state`).
    plugin_state: dict[type, Any] = field(default_factory=dict)
    #: Lines the kernel prints (rank 0) in the final run summary (plugins may append).
    report_lines: list[str] = field(default_factory=list)
    #: Run when the run ends, in reverse order, whether it succeeded or failed (see :meth:`add_cleanup`).
    cleanups: list[Callable[[], Any]] = field(default_factory=list)

    def state(self, kind: type[T]) -> T:
        """This run's instance of a plugin's own state class (a dataclass whose fields have defaults), created on
        first use: typed where a shared dict was not, owned by the plugin that defines the class, never shared
        between runs."""
        if kind not in self.plugin_state:
            self.plugin_state[kind] = kind()
        return self.plugin_state[kind]

    def add_cleanup(self, undo: Callable[[], Any]) -> None:
        """Have ``undo()`` run when this run ends, on every rank, even after an error: a plugin that
        patches a library for its run (a kernel library's patches) restores it, so the next run in the same process
        (a sweep's next job, a test) starts from the library as it was."""
        self.cleanups.append(undo)

    def close(self) -> None:
        """Run the cleanups (newest first); one that fails is logged and the others still run."""
        while self.cleanups:
            undo = self.cleanups.pop()
            try:
                undo()
            except Exception:  # noqa: BLE001 - a failed cleanup must not hide the run's own outcome
                import logging

                logging.getLogger("ft").exception("cleanup %r failed", undo)

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that owns the run folder, logs, plots and the final model."""
        return self.rank == 0

    @property
    def ranks(self) -> Any:
        """This process's :class:`ft.distributed.Ranks` (for the collective helpers there)."""
        from ft.distributed import Ranks

        return Ranks(self.rank, self.world_size, self.local_rank)

    @property
    def method_traits(self) -> tuple[str, ...]:
        """The selected method's traits (``ft.hookspecs.METHOD_TRAITS``)."""
        return self.traits.get(f"method/{self.choices.get('method')}", ())

    @property
    def metrics_path(self) -> Path:
        """The run's metrics file: one JSON object a line."""
        return self.run_dir / "metrics.jsonl"
