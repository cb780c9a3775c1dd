"""The files ``ft new-plugin`` writes, as ``string.Template`` texts (``$name``, ``$group``, ``$Class``...).

One plugin module and one test module per group; the rest (pyproject, README, option YAML) is shared.
Every generated plugin is a working feature, not an empty shell, and its tests pass as generated
(tests/test_new_plugin.py builds, installs and runs each one).
"""

from __future__ import annotations

PYPROJECT = '''[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "ft-$name"
version = "0.1.0"
description = "$description"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["ft"]

[project.optional-dependencies]
test = ["pytest>=8"]

# The two entry points every ft plugin declares: its hook module, and its config package (read without
# importing the plugin, so `ft --help` and `ft validate` stay fast).
[project.entry-points.ft]
$name = "ft_$name.plugin"

[project.entry-points."ft.conf"]
$name = "ft_$name.conf"

[tool.setuptools]
packages = ["ft_$name", "ft_$name.conf"]

[tool.setuptools.package-data]
"ft_$name.conf" = ["**/*.yaml"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

README = '''# ft-$name

$description

```bash
pip install -e .            # registers the plugin with ft (entry points "ft" and "ft.conf")
ft plugins                  # lists $name with its hooks and its option $group=$name
ft validate $select$example_overrides
ft run $select$example_overrides
```

## Options

$options_doc

## Files

- `ft_$name/plugin.py`: `FT_PLUGIN` (what the plugin declares to ft) and its hooks; hooks are documented in
  ft's `docs/plugins.md` and `ft/hookspecs.py`. Import only from `ft.api`.
- `ft_$name/conf/$group/$name.yaml`: the option's defaults, composed by Hydra when `$group=$name` is selected.
- `tests/`: pytest tests built on `ft_testing` (a tiny random model and tokenizer, offline, CPU):
  `pip install -e '.[test]' && pytest`.
'''

# -- logger -----------------------------------------------------------------------------------------

LOGGER_YAML = '''# Every metric the trainer logs, one JSON object a line, in a file of the run folder.
$name:
  file: $name.jsonl         # file name inside the run folder
  every_n_steps: 1          # keep one logged step in N (the last step is always kept)
'''

LOGGER_OPTIONS = '''| option | default | meaning |
|---|---|---|
| `$group.$name.file` | `$name.jsonl` | file name inside the run folder |
| `$group.$name.every_n_steps` | `1` | keep one logged step in N (the last step always) |'''

LOGGER_PLUGIN = '''"""ft-$name: write every metric the trainer logs to a JSON-lines file in the run folder ($group=$name).

The option's settings live under their own key (``$group.$name``), so it can be selected together with
other loggers: ``ft run '$group=[$name,tensorboard]'``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ft.api import ConfigError, PluginInfo, bounded, hookimpl

FT_PLUGIN = PluginInfo(name="$name", contract="3.0", description="$description")


@dataclass
class ${Class}Options:
    file: str = "$name.jsonl"
    every_n_steps: int = bounded(1, ge=1)


@dataclass
class ${Class}Config:
    """Schema of ``$group=$name``: ft validate rejects unknown keys and wrong types before a run starts."""

    $name: ${Class}Options = field(default_factory=${Class}Options)


@hookimpl
def config_schemas() -> dict[str, type]:
    return {"$group/$name": ${Class}Config}


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    """A rule the schema cannot say: the file is a plain name inside the run folder."""
    name = cfg.$group.$name.file
    if not name or "/" in name or "\\\\" in name:
        raise ConfigError(f"$group.$name.file={name!r} is not valid: expected a file name inside the run folder, "
                          "without a path (e.g. $name.jsonl)")


@hookimpl
def callbacks(ctx: Any) -> list[Any]:
    from transformers import TrainerCallback

    options = ctx.cfg.$group.$name
    path = ctx.run_dir / options.file

    class ${Class}Callback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if not logs or not state.is_world_process_zero:
                return
            if state.global_step % options.every_n_steps and state.global_step != state.max_steps:
                return
            with path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": state.global_step, **logs}, default=float) + "\\n")

    return [${Class}Callback()]
'''

LOGGER_TEST = '''"""ft-$name on a tiny model: the file holds what ft's own metrics.jsonl holds, at the chosen steps."""

from __future__ import annotations

import json

from ft.api import cli_main as main
from ft_testing import run_lifecycle, write_chat_rows


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_file_holds_every_logged_loss(tiny_model_dir, tmp_path):
    data = write_chat_rows(tmp_path / "chat.jsonl")
    run = tmp_path / "run"
    run_lifecycle([f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={data}", "trainer.max_steps=6",
                   "trainer.logging_steps=1", "$group=$name", "$group.$name.every_n_steps=2"], run)
    ours = {r["step"]: r["loss"] for r in records(run / "$name.jsonl") if "loss" in r}
    ft_own = {r["step"]: r["loss"] for r in records(run / "metrics.jsonl") if "loss" in r}
    assert ours == {step: loss for step, loss in ft_own.items() if step % 2 == 0 or step == 6}
    assert sorted(ours) == [2, 4, 6]


def test_bad_options_fail_at_validate(capsys):
    assert main(["validate", "$group=$name", "$group.$name.every_n_steps=0"]) == 2
    assert "every_n_steps=0 is not valid" in capsys.readouterr().err
    assert main(["validate", "$group=$name", "$group.$name.file=logs/x.jsonl"]) == 2
    assert "expected a file name inside the run folder" in capsys.readouterr().err
'''

# -- adapter ----------------------------------------------------------------------------------------

ADAPTER_YAML = '''# Train only the top decoder layers (and optionally the output head); every other weight stays frozen.
top_layers: 2               # how many of the last decoder layers train
train_head: false           # also train the output head (tied embeddings train with it)
'''

ADAPTER_OPTIONS = '''| option | default | meaning |
|---|---|---|
| `$group.top_layers` | `2` | how many of the last decoder layers train |
| `$group.train_head` | `false` | also train the output head (tied input embeddings train with it) |'''

ADAPTER_PLUGIN = '''"""ft-$name: partial fine-tuning ($group=$name): only the top decoder layers train.

A cheap alternative to LoRA when the last layers are where a task is learned: no new weights, the saved
model is a plain transformers model. Implemented in the ``adapt_model`` phase, after the model is
loaded and prepared, where adapters belong.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ft.api import ConfigError, PluginInfo, bounded, hookimpl

FT_PLUGIN = PluginInfo(name="$name", contract="3.0", description="$description")
log = logging.getLogger("ft")


@dataclass
class ${Class}Config:
    """Schema of ``$group=$name``."""

    top_layers: int = bounded(2, ge=1)
    train_head: bool = False


@hookimpl
def config_schemas() -> dict[str, type]:
    return {"$group/$name": ${Class}Config}


def decoder_layers(model: Any) -> Any:
    """The model's list of decoder layers: the ``nn.ModuleList`` as long as ``config.num_hidden_layers``."""
    import torch

    count = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise ConfigError(f"$group=$name cannot find the decoder layers of {type(model).__name__}; drop $group=$name")


@hookimpl
def adapt_model(ctx: Any) -> None:
    options = ctx.cfg.$group
    layers = decoder_layers(ctx.model)
    if options.top_layers > len(layers):
        raise ConfigError(f"$group.top_layers={options.top_layers}: the model has only {len(layers)} decoder layers")
    for parameter in ctx.model.parameters():
        parameter.requires_grad_(False)
    for layer in list(layers)[-options.top_layers:]:
        for parameter in layer.parameters():
            parameter.requires_grad_(True)
    if options.train_head:
        for parameter in ctx.model.get_output_embeddings().parameters():
            parameter.requires_grad_(True)
    log.info("$group=$name: training the last %d of %d decoder layers%s", options.top_layers, len(layers),
             " and the output head" if options.train_head else "")
'''

ADAPTER_TEST = '''"""ft-$name on a tiny model: the top layers train, everything below stays as loaded."""

from __future__ import annotations

from ft.api import cli_main as main
from ft_testing import run_lifecycle, write_chat_rows


def test_only_the_top_layers_change(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    data = write_chat_rows(tmp_path / "chat.jsonl")
    run = tmp_path / "run"
    run_lifecycle([f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={data}", "trainer.max_steps=4",
                   "optim.lr=1e-2", "$group=$name", "$group.top_layers=1"], run)
    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).state_dict()
    after = AutoModelForCausalLM.from_pretrained(run / "model", dtype=torch.float32).state_dict()
    top = max(int(name.split(".")[2]) for name in before if name.startswith("model.layers."))
    for name, weight in before.items():
        changed = not torch.equal(weight, after[name])
        assert changed == name.startswith(f"model.layers.{top}."), name


def test_more_layers_than_the_model_has_is_one_clear_error(tiny_model_dir, tmp_path, capsys):
    data = write_chat_rows(tmp_path / "chat.jsonl")
    code = main(["run", f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={data}",
                 "trainer.max_steps=1", "$group=$name", "$group.top_layers=99", f"run.root={tmp_path}"])
    assert code == 2
    assert "$group.top_layers=99: the model has only" in capsys.readouterr().err
    assert main(["validate", "$group=$name", "$group.top_layers=0"]) == 2
'''

# -- method -----------------------------------------------------------------------------------------

METHOD_YAML = '''# Supervised fine-tuning with NEFTune: uniform noise added to the input embeddings while training.
name: $name
noise_alpha: 5.0            # noise scale (NEFTune's alpha); 0 turns the noise off (plain SFT)
'''

METHOD_OPTIONS = '''| option | default | meaning |
|---|---|---|
| `$group.noise_alpha` | `5.0` | NEFTune noise scale; `0` is plain SFT |'''

METHOD_PLUGIN = '''"""ft-$name: a training method ($group=$name): SFT with NEFTune noise on the input embeddings.

A method builds the trainer (capability ``trainer``) and declares traits that tell other plugins what it
is: ``packable`` (rows are independent token sequences, so packing may join them) and ``token_loss``
(its loss is the next-token cross entropy, so loss kernels may compute it). The noise is transformers'
own NEFTune (``TrainingArguments.neftune_noise_alpha``), active only while training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ft.api import PluginInfo, bounded, hookimpl

FT_PLUGIN = PluginInfo(
    name="$name", contract="3.0",
    description="$description",
    capabilities=("trainer",),
    traits={"$group/$name": ("packable", "token_loss")},
)


@dataclass
class ${Class}Config:
    """Schema of ``$group=$name``."""

    name: str = "$name"
    noise_alpha: float = bounded(5.0, ge=0)


@hookimpl
def config_schemas() -> dict[str, type]:
    return {"$group/$name": ${Class}Config}


@hookimpl
def training_args(ctx: Any) -> dict[str, Any]:
    return {"neftune_noise_alpha": ctx.cfg.$group.noise_alpha or None}


@hookimpl
def create_trainer(ctx: Any) -> Any:
    from ft_trainer.api import ft_trainer_class
    from transformers import Trainer

    return ft_trainer_class(Trainer)(
        model=ctx.model, args=ctx.args, train_dataset=ctx.datasets.train, eval_dataset=ctx.datasets.eval,
        data_collator=ctx.data_collator, processing_class=ctx.tokenizer, callbacks=ctx.callbacks, ft_ctx=ctx)
'''

METHOD_TEST = '''"""ft-$name on a tiny model: without noise it is SFT exactly; with noise the training differs."""

from __future__ import annotations

from ft.api import cli_main as main
from ft_testing import assert_same_training, train_tiny_sft


def test_without_noise_it_trains_exactly_like_sft_and_with_noise_it_does_not(tiny_model_dir, tmp_path):
    plain = train_tiny_sft(tiny_model_dir, tmp_path / "sft", [])
    quiet = train_tiny_sft(tiny_model_dir, tmp_path / "quiet", ["$group=$name", "$group.noise_alpha=0"])
    noisy = train_tiny_sft(tiny_model_dir, tmp_path / "noisy", ["$group=$name", "$group.noise_alpha=5"])
    assert_same_training(plain, quiet)
    assert max(abs(a - b) for a, b in zip(plain.losses[1:], noisy.losses[1:])) > 1e-4


def test_negative_noise_fails_at_validate(capsys):
    assert main(["validate", "$group=$name", "$group.noise_alpha=-1"]) == 2
    assert "noise_alpha=-1" in capsys.readouterr().err
'''

# -- kernels ----------------------------------------------------------------------------------------

KERNELS_YAML = '''# The token loss computed chunk by chunk, each chunk's logits recomputed in the backward pass:
# the full [tokens x vocabulary] logits never exist at once.
chunk_size: 1024            # rows (tokens) per chunk
'''

KERNELS_OPTIONS = '''| option | default | meaning |
|---|---|---|
| `$group.chunk_size` | `1024` | tokens per chunk: smaller saves memory, larger runs faster |'''

KERNELS_PLUGIN = '''"""ft-$name: a loss kernel ($group=$name): the next-token loss without materialising the logits.

ft runs the model up to its final hidden states (``ft.api.fused_token_loss``: label shift, divisor,
gradient accumulation and multi-rank scaling are ft's); this plugin computes the sum of the trained
rows' cross entropy chunk by chunk, recomputing each chunk's logits in the backward pass
(``torch.utils.checkpoint``), so peak memory holds one chunk of logits instead of all of them.
Methods must have the ``token_loss`` trait (``requires_traits``); others are refused at ft validate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ft.api import PluginInfo, bounded, hookimpl
from ft_kernels.token_loss import check_fusable, fused_token_loss

FT_PLUGIN = PluginInfo(name="$name", contract="3.0", description="$description", capabilities=("loss",),
                       requires_traits=("token_loss",))
WHO = "$group=$name"


@dataclass
class ${Class}Config:
    """Schema of ``$group=$name``."""

    chunk_size: int = bounded(1024, ge=1)


@hookimpl
def config_schemas() -> dict[str, type]:
    return {"$group/$name": ${Class}Config}


@hookimpl
def post_model_load(ctx: Any) -> None:
    check_fusable(ctx.model, WHO)  # one clear line now rather than a failure at the first batch


def _chunk_loss(hidden: Any, weight: Any, bias: Any, targets: Any, softcap: float | None) -> Any:
    import torch

    logits = torch.nn.functional.linear(hidden, weight, bias).float()
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return torch.nn.functional.cross_entropy(logits, targets, ignore_index=-100, reduction="sum")


def chunked_linear_cross_entropy(inputs: Any, chunk_size: int) -> Any:
    """Sum of cross entropy over the trained rows of ``inputs`` (an ``ft.api.HeadInputs``)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    keep = inputs.targets != -100
    hidden, targets = inputs.hidden[keep], inputs.targets[keep]
    total = inputs.hidden.sum() * 0.0  # a differentiable 0 when nothing is trained
    for start in range(0, hidden.shape[0], chunk_size):
        end = start + chunk_size
        total = total + checkpoint(_chunk_loss, hidden[start:end], inputs.weight, inputs.bias, targets[start:end],
                                   inputs.softcap, use_reentrant=False)
    return total


@hookimpl
def loss(ctx: Any, call: Any) -> Any:
    chunk_size = ctx.cfg.$group.chunk_size
    return fused_token_loss(call, lambda inputs: chunked_linear_cross_entropy(inputs, chunk_size), WHO)
'''

KERNELS_TEST = '''"""ft-$name on a tiny model: the same losses and weights as transformers' own loss."""

from __future__ import annotations

from ft.api import cli_main as main
from ft_testing import assert_same_training, train_tiny_sft


def test_training_with_the_kernel_equals_training_without(tiny_model_dir, tmp_path):
    plain = train_tiny_sft(tiny_model_dir, tmp_path / "plain", [])
    chunked = train_tiny_sft(tiny_model_dir, tmp_path / "chunked", ["$group=$name", "$group.chunk_size=7"])
    assert_same_training(plain, chunked)


def test_bad_options_fail_at_validate(capsys):
    assert main(["validate", "$group=$name", "$group.chunk_size=0"]) == 2
    assert "chunk_size=0 is not valid" in capsys.readouterr().err
'''

# -- data -------------------------------------------------------------------------------------------

DATA_YAML = '''# Question/answer rows: {"question": "...", "answer": "..."}. The question is the user's turn (through
# the chat template), the answer and its end-of-turn token are trained.
path: ???                   # a file (.json/.jsonl/.parquet/.csv), a folder, or a hub id
format: $name
sequence_len: 512
val_size: 0.0
bad_rows: error             # error: stop at the first malformed row, naming it | drop: skip and count them
'''

DATA_OPTIONS = '''| option | default | meaning |
|---|---|---|
| `$group.path` | required | the rows: `{"question": ..., "answer": ...}` |
| `$group.format` | `$name` | the format this plugin contributes (any other data option may use it too) |'''

DATA_PLUGIN = '''"""ft-$name: a dataset format ($group=$name, or data.format=$name with any data option).

Rows ``{"question": ..., "answer": ...}``: the question goes through the tokenizer's chat template as the
user's turn; the answer and the end-of-turn token are the trained labels (the prompt is masked with -100).
A format is a plain function ``(row, tokenizer, options) -> {"input_ids", "labels"}``; ft's data
pipeline does the rest (length policy, caching, packing, splits).
"""

from __future__ import annotations

from typing import Any

from ft.api import DataError, IGNORE_INDEX, PluginInfo, hookimpl

FT_PLUGIN = PluginInfo(name="$name", contract="3.0", description="$description")


def format_$name(row: dict[str, Any], tokenizer: Any, options: Any) -> dict[str, list[int]]:
    question, answer = row.get("question"), row.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str):
        raise DataError("a $name row needs string fields 'question' and 'answer'")
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                           add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    return {"input_ids": prompt_ids + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids}


@hookimpl
def dataset_formats() -> dict[str, Any]:
    return {"$name": format_$name}
'''

DATA_TEST = '''"""ft-$name: exact labels (the answer and end of turn trained, nothing else), and a run that trains on it."""

from __future__ import annotations

import json

from ft.api import IGNORE_INDEX
from ft.api import cli_main as main
from ft.api import run_lifecycle


def test_the_answer_and_its_end_of_turn_are_the_only_trained_tokens(tiny_model_dir):
    from transformers import AutoTokenizer

    from ft_$name.plugin import format_$name

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    example = format_$name({"question": "What is 2 plus 3?", "answer": "5"}, tokenizer, None)
    trained = [t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
    assert tokenizer.decode(trained) == "5" + tokenizer.eos_token
    assert "What is 2 plus 3?" in tokenizer.decode(example["input_ids"])


def test_a_run_trains_on_question_answer_rows(tiny_model_dir, tmp_path):
    rows = tmp_path / "qa.jsonl"
    rows.write_text("".join(json.dumps({"question": f"What is {i} plus 1?", "answer": str(i + 1)}) + "\\n"
                            for i in range(24)))
    metrics = run_lifecycle([f"model.name_or_path={tiny_model_dir}", "data=$name", f"data.path={rows}",
                             "trainer.max_steps=3"], tmp_path / "run")
    assert metrics["train_loss"] > 0


def test_a_row_without_an_answer_is_refused(tiny_model_dir, tmp_path, capsys):
    rows = tmp_path / "bad.jsonl"
    rows.write_text(json.dumps({"question": "no answer"}) + "\\n")
    code = main(["run", f"model.name_or_path={tiny_model_dir}", "data=$name", f"data.path={rows}",
                 "trainer.max_steps=1", f"run.root={tmp_path}"])
    assert code == 2
    assert "needs string fields 'question' and 'answer'" in capsys.readouterr().err
'''

#: group -> (one-line description, plugin module, test module, option YAML, options table, example overrides)
GROUPS: dict[str, tuple[str, str, str, str, str, str]] = {
    "logger": ("Logs every training metric to a JSON-lines file in the run folder", LOGGER_PLUGIN, LOGGER_TEST,
               LOGGER_YAML, LOGGER_OPTIONS, " $group.$name.every_n_steps=5"),
    "adapter": ("Partial fine-tuning: only the top decoder layers train", ADAPTER_PLUGIN, ADAPTER_TEST, ADAPTER_YAML,
                ADAPTER_OPTIONS, " $group.top_layers=4"),
    "method": ("Supervised fine-tuning with NEFTune noise on the input embeddings", METHOD_PLUGIN, METHOD_TEST,
               METHOD_YAML, METHOD_OPTIONS, " $group.noise_alpha=5"),
    "kernels": ("A chunked next-token loss that never materialises the full logits", KERNELS_PLUGIN, KERNELS_TEST,
                KERNELS_YAML, KERNELS_OPTIONS, " $group.chunk_size=2048"),
    "data": ("A question/answer dataset format", DATA_PLUGIN, DATA_TEST, DATA_YAML, DATA_OPTIONS,
             " data.path=qa.jsonl"),
}
