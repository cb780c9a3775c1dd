"""Kernel v2's promises to plugin authors: loss chain, traits, capabilities, plugin hookspecs, bounds,
one name per plugin, and traps that used to fail silently."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ft import hookimpl
from ft.api import LossResult
from ft_testing import TEST_DATA, install_fake_plugin, run_ft, run_lifecycle, write_chat_rows

LOSS_KERNEL = """
from ft.api import PluginInfo, hookimpl

FT_PLUGIN = PluginInfo(name="{name}", description="a fused loss", capabilities=("loss",),
                       requires_traits=("token_loss",))

@hookimpl
def loss(ctx, call):
    return call.method_loss()
"""


def pairs_file(tmp_path: Path) -> Path:
    rows = [{"prompt": f"What is {i} + 1?", "chosen": f"{i + 1}", "rejected": f"{i + 2}"} for i in range(8)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- the loss chain -------------------------------------------------------------------------------


def test_a_loss_plugin_that_cannot_serve_the_method_is_refused_at_validate(tmp_path):
    site = tmp_path / "site"
    install_fake_plugin(site, "ft-fused", "fused", LOSS_KERNEL.format(name="fused"), {"kernels/fused.yaml": "chunk: 8\n"})
    ok = run_ft(["validate", "+kernels=fused"], site=site)
    assert ok.returncode == 0, ok.stderr
    refused = run_ft(["validate", "+kernels=fused", "+method=dpo", f"data.path={pairs_file(tmp_path)}"], site=site)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "ft: error: kernels=fused needs a method that is token_loss, but method=dpo is computes_own_logits, "
        "needs_reference; drop kernels=fused or choose another method")


def test_a_loss_kernel_that_forgets_its_trait_is_still_refused_for_dpo(tmp_path):
    """Replacing the method's loss implies token_loss: omitting requires_traits cannot crash DPO at run time."""
    site = tmp_path / "site"
    forgetful = LOSS_KERNEL.format(name="forgetful").replace(',\n                       requires_traits=("token_loss",)', "")
    assert "requires_traits" not in forgetful
    install_fake_plugin(site, "ft-forgetful", "forgetful", forgetful, {"kernels/forgetful.yaml": "chunk: 8\n"})
    refused = run_ft(["validate", "+kernels=forgetful", "+method=grpo"], site=site)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "ft: error: kernels=forgetful needs a method that is token_loss, but method=grpo is computes_own_logits, "
        "generates; drop kernels=forgetful or choose another method")


#: A logger that also wraps the loss and reads the labels, declaring no traits (what an outside author writes).
PEEKING_WRAPPER = """
from ft.api import PluginInfo, hookimpl

FT_PLUGIN = PluginInfo(name="peek", contract="3.0")


@hookimpl(wrapper=True)
def loss(ctx, call):
    trained = int((call.inputs["labels"] != -100).sum())  # DPO and GRPO batches have no labels
    result = yield
    result.parts["trained_tokens"] = trained
    return result
"""


def test_a_loss_wrapper_without_traits_is_called_for_sft_and_not_for_dpo(tmp_path, monkeypatch, tiny_model_dir):
    import torch

    from ft.api import LossCall, prepare_run

    site = tmp_path / "site"
    install_fake_plugin(site, "ft-peek", "peek", PEEKING_WRAPPER, {"logger/peek.yaml": "enabled: true\n"})
    monkeypatch.syspath_prepend(str(site))

    def loss_of(batch: dict[str, Any], *overrides: str) -> LossResult:
        prepared = prepare_run(["+logger=peek", f"model.name_or_path={tiny_model_dir}", *overrides])
        ctx = prepared.context(tmp_path / "run")
        call = LossCall(model=None, inputs=batch, num_items_in_batch=None, training=True, return_outputs=False,
                        method_loss=lambda: LossResult(torch.tensor(0.5)))
        return ctx.loss_hook(ctx=ctx, call=call)

    sft = loss_of({"labels": torch.tensor([[-100, 4, 5, -100]])})
    assert sft.parts == {"trained_tokens": 2}
    pairs = {"chosen_input_ids": torch.ones(1, 3, dtype=torch.long)}
    dpo = loss_of(pairs, "+method=dpo", f"data.path={pairs_file(tmp_path)}")
    assert float(dpo.loss) == 0.5 and dpo.parts == {}  # not called: no KeyError on 'labels'


class KernelStyleLoss:
    """Replaces the method's cross entropy with its own computation (what a fused kernel does)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, float]] = []

    @hookimpl
    def loss(self, ctx: Any, call: Any) -> LossResult:
        import torch.nn.functional as F

        inputs = {k: v for k, v in call.inputs.items() if k != "labels"}
        outputs = call.model(**inputs)
        logits = outputs.logits[:, :-1].float()
        labels = call.inputs["labels"][:, 1:]
        total = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100,
                                reduction="sum")
        count = call.num_items_in_batch if call.num_items_in_batch is not None else (labels != -100).sum()
        ce = total / count
        own = call.method_loss().loss.detach()  # the model's own loss, for the comparison only
        self.calls.append({"ce": float(ce), "own": float(own), "training": call.training})
        return LossResult(ce, outputs, parts={"ce": ce.detach()})


class DistillStyleTerm:
    """Wraps whatever computes the base loss and adds a term of its own (what distillation does)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, float]] = []

    @hookimpl(wrapper=True)
    def loss(self, ctx: Any, call: Any):
        result = yield
        extra = 0.5 * call.model.lm_head.weight.float().pow(2).mean()
        inner = float(result.loss)
        result.loss = result.loss + extra
        result.parts["extra"] = extra.detach()
        self.calls.append({"inner": inner, "extra": float(extra), "total": float(result.loss)})
        return result


def test_a_kernel_style_loss_and_a_distillation_style_term_compose_in_one_sft_run(tiny_model_dir, tmp_path):
    rows = write_chat_rows(tmp_path / "chat.jsonl", n=24)
    kernel, term = KernelStyleLoss(), DistillStyleTerm()
    metrics = run_lifecycle([f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}",
                             "trainer.micro_batch_size=4", "trainer.max_steps=4", "trainer.logging_steps=2",
                             "run.plot=false", "run.save_final_model=false"], tmp_path / "run", kernel, term)
    train_calls = [c for c in kernel.calls if c["training"]]
    assert len(train_calls) == 4 == len(term.calls)
    for mine, wrapped in zip(train_calls, term.calls):
        assert mine["ce"] == pytest.approx(mine["own"], rel=1e-5)   # the replaced CE is the model's CE
        assert wrapped["inner"] == pytest.approx(mine["ce"], rel=1e-6)  # the wrapper saw the kernel's loss
        assert wrapped["total"] == pytest.approx(wrapped["inner"] + wrapped["extra"], rel=1e-6)  # sum of parts
        assert wrapped["extra"] > 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "loss/ce" in r]
    assert logged, records
    for record in logged:  # the logged parts add up to the logged loss (both averaged over the same steps)
        assert record["loss/ce"] + record["loss/extra"] == pytest.approx(record["loss"], rel=1e-3)
    assert math.isfinite(metrics["train_loss"])


class BatchWatcher:
    """A per-batch hook next to multipack's collator: it sees packed batches and its change reaches the loss."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, ...]] = []
        self.marked = 0

    @hookimpl
    def process_batch(self, ctx: Any, batch: dict[str, Any], training: bool) -> None:
        self.seen.append(tuple(sorted(batch)))
        batch["ft_watch"] = True

    @hookimpl(wrapper=True)
    def loss(self, ctx: Any, call: Any):
        self.marked += int(call.inputs.pop("ft_watch", False))  # removed before the model's forward
        return (yield)


def test_process_batch_composes_with_multipacks_collator(tiny_model_dir, tmp_path):
    rows = write_chat_rows(tmp_path / "chat.jsonl", n=24)
    watcher = BatchWatcher()
    run_lifecycle([f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}", "data.sequence_len=128",
                   "+packing=multipack", "trainer.micro_batch_size=1", "trainer.max_steps=2", "run.plot=false",
                   "run.save_final_model=false"], tmp_path / "run", watcher)
    assert len(watcher.seen) == 2 and watcher.marked == 2
    assert all("position_ids" in keys and "labels" in keys for keys in watcher.seen)  # multipack's packed batches


# -- capabilities, traits and plugin-defined hooks ---------------------------------------------------

UNDECLARED = """
from ft.api import PluginInfo, hookimpl
FT_PLUGIN = PluginInfo(name="sneaky", description="takes the loss over without saying so")

@hookimpl
def loss(ctx, call):
    return call.method_loss()
"""


def test_a_firstresult_hook_without_its_capability_is_a_load_error(tmp_path):
    site = tmp_path / "site"
    install_fake_plugin(site, "ft-sneaky", "sneaky", UNDECLARED)
    expected = ("ft: error: plugin 'sneaky' (ft-sneaky) implements loss (who builds it: capability 'loss') without "
                "declaring it; add 'loss' to FT_PLUGIN.capabilities, or make the hook a wrapper")
    result = run_ft(["validate"], site=site)
    assert result.returncode == 2 and result.stderr.strip() == expected
    listed = run_ft(["plugins"], site=site)  # shown as broken, with its problem, and a failing exit code
    assert listed.returncode == 2 and "sneaky 1.2.3 (ft-sneaky) [BROKEN]" in listed.stdout
    helped = run_ft(["--help"], site=site)  # help always answers
    assert helped.returncode == 0 and "commands:" in helped.stdout and "sneaky" in helped.stderr


MISSPELT = """
from ft.api import PluginInfo, hookimpl
FT_PLUGIN = PluginInfo(name="typo")

@hookimpl
def callback(ctx):
    return []
"""


def test_a_misspelt_hook_names_the_distribution_and_the_hook_it_meant(tmp_path):
    site = tmp_path / "site"
    install_fake_plugin(site, "ft-typo", "typo", MISSPELT)
    result = run_ft(["validate"], site=site)
    assert result.returncode == 2
    assert result.stderr.strip() == ("ft: error: plugin 'typo' (ft-typo) implements hook 'callback', which ft does "
                                     "not define (did you mean 'callbacks'?); the hooks are listed in docs/plugins.md")
    assert run_ft(["--help"], site=site).returncode == 0
    assert run_ft(["-p", "no:typo", "validate"], site=site).returncode == 0


SPEC_OWNER = """
from ft.api import PluginInfo, hookimpl, hookspec

class RewardSpecs:
    @hookspec
    def score_functions(self):
        '''Named reward functions for the owner to call. Combine: collected.'''

FT_PLUGIN = PluginInfo(name="owner", hookspecs=RewardSpecs)

@hookimpl
def post_trainer_create(ctx):
    pass
"""
SPEC_USER = """
from ft.api import PluginInfo, hookimpl
FT_PLUGIN = PluginInfo(name="user")

@hookimpl
def score_functions():
    return {"exact": lambda text: 1.0}
"""


def test_a_plugin_defined_hook_is_called_on_a_second_plugin(tmp_path):
    site = tmp_path / "site"
    install_fake_plugin(site, "ft-owner", "owner", SPEC_OWNER)
    install_fake_plugin(site, "ft-user", "user", SPEC_USER)
    assert run_ft(["plugins"], site=site).returncode == 0  # the user's hook has a spec: no load error
    script = ("from ft.plugins import discover, make_plugin_manager\n"
              "found = discover(); found.raise_if_broken()\n"
              "pm = make_plugin_manager(found.plugins)\n"
              "print(sorted(name for d in pm.hook.score_functions() for name in d))\n")
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['exact']"
    alone = run_ft(["-p", "no:owner", "validate"], site=site)  # without the owner, the user's hook has no spec
    assert alone.returncode == 2 and "implements hook 'score_functions', which ft does not define" in alone.stderr


# -- one name, config packages, traps ----------------------------------------------------------------

NAMED = """
from ft.api import PluginInfo, hookimpl
FT_PLUGIN = PluginInfo(name="{name}")

@hookimpl
def post_trainer_create(ctx):
    pass
"""


def test_config_package_under_another_entry_point_name_is_an_error_not_vanished_options(tmp_path):
    site = tmp_path / "site"
    install_fake_plugin(site, "ft-split", "split", NAMED.format(name="split"), {"logger/split.yaml": "x: 1\n"},
                        conf_entry_point="split_conf")
    result = run_ft(["validate"], site=site)
    assert result.returncode == 2
    assert "names config package 'ft_split.conf' under [ft.conf] as 'split_conf', but no [ft] entry point has that name" in result.stderr


def test_config_package_without_yaml_files_says_to_ship_them_as_package_data(tmp_path):
    site = tmp_path / "site"
    install_fake_plugin(site, "ft-empty", "empty", NAMED.format(name="empty"), {})
    result = run_ft(["validate"], site=site)
    assert result.returncode == 2 and "holds no <group>/<option>.yaml files" in result.stderr
    assert "package-data" in result.stderr


def test_plugin_name_must_equal_its_entry_point_name(tmp_path):
    site = tmp_path / "site"
    install_fake_plugin(site, "ft-twin", "twin", NAMED.format(name="other_name"))
    result = run_ft(["validate"], site=site)
    assert result.returncode == 2 and "FT_PLUGIN.name is 'other_name' but its entry point is named 'twin'" in result.stderr


def test_p_and_ft_plugins_reject_unknown_names_with_a_suggestion(tmp_path):
    blocked = run_ft(["-p", "no:lroa", "validate"])
    assert blocked.returncode == 2 and "no installed plugin is named 'lroa' (did you mean 'lora'?)" in blocked.stderr
    allowed = run_ft(["validate"], env={"FT_PLUGINS": "multipak"})
    assert allowed.returncode == 2 and "did you mean 'multipack'?" in allowed.stderr


def test_a_plugin_may_add_a_new_config_group(tmp_path):
    site = tmp_path / "site"
    install_fake_plugin(site, "ft-prof", "prof", NAMED.format(name="prof"), {"profiler/steps.yaml": "every: 10\n"})
    result = run_ft(["config", "show", "+profiler=steps", "profiler.every=3"], site=site)
    assert result.returncode == 0, result.stderr
    assert "profiler:\n  every: 3" in result.stdout


# -- bounds and names at validate ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["optim.lr=-1e-4"], "ft: error: optim.lr=-0.0001 is not valid: expected a number > 0"),
        (["optim.lr=nan"], "ft: error: optim.lr=nan is not valid: expected a finite number > 0"),
        (["+adapter=lora", "adapter.r=0"], "ft: error: adapter.r=0 is not valid: expected a rank of at least 1"),
        (["data.sequence_len=0"], "ft: error: data.sequence_len=0 is not valid: expected an integer >= 1"),
        (["data=alpaca", f"data.path={TEST_DATA / 'gsm8k' / 'train.jsonl'}", "data.format=chat_templte"],
         "ft: error: data.format='chat_templte': no such dataset format (did you mean 'chat_template'?); available: "
         "alpaca, chat_template, completion, input_output, pretokenized, template"),
        (["optim.scheduler=cosin"], "(did you mean 'cosine'?)"),
        (["trainer.micro_batch_size=0"], "ft: error: trainer.micro_batch_size=0 is not valid: expected an integer >= 1"),
        (["+packing=multipack", "packing.group_size=0"], "packing.group_size=0 is not valid: expected at least 1 row"),
    ],
)
def test_out_of_range_values_and_misspelt_names_are_exit_2_at_validate(overrides, expected):
    result = run_ft(["validate", *overrides], cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]


def test_scheduler_and_optimizer_names_match_transformers():
    import typing

    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    from ft.schema import OptimizerName, SchedulerName

    assert set(typing.get_args(SchedulerName)) == {s.value for s in SchedulerType}
    assert set(typing.get_args(OptimizerName)) == {o.value for o in OptimizerNames}
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    from ft_outputs.plugin import REPORT_TO

    assert set(REPORT_TO) == set(INTEGRATION_TO_CALLBACK) | {"all", "none"}


def test_ft_testing_helpers_work_without_pytest(tmp_path):
    script = ("import sys; sys.modules['pytest'] = None\n"  # as if pytest were not installed
              "from pathlib import Path\n"
              "import ft_testing as t\n"
              "folder = t.build_tiny_model(Path(sys.argv[1]))\n"
              "rows = t.write_chat_rows(Path(sys.argv[1]) / 'chat.jsonl', n=4)\n"
              "print((folder / 'config.json').is_file(), rows.is_file())\n")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True True"


# -- presets ---------------------------------------------------------------------------------------------


def test_the_default_experiment_comes_with_the_default_task_only(tmp_path):
    chats = write_chat_rows(tmp_path / "chat.jsonl", n=4)
    default = run_ft(["config", "show"])
    assert default.returncode == 0, default.stderr
    assert "experiment=default_task" in default.stdout.splitlines()[0]
    assert "max_steps: 60" in default.stdout and "lr: 5.0e-05" in default.stdout
    own_data = run_ft(["config", "show", "data=chat", f"data.path={chats}"])
    assert own_data.returncode == 0, own_data.stderr
    assert "experiment" not in own_data.stdout.splitlines()[0] and "max_steps: -1" in own_data.stdout
    dropped = run_ft(["config", "show", "experiment=null"])
    assert dropped.returncode == 0 and "max_steps: -1" in dropped.stdout


def test_the_selection_line_names_the_model_actually_loaded(tiny_model_dir, tmp_path):
    chats = write_chat_rows(tmp_path / "chat.jsonl", n=4)
    result = run_ft(["validate", f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={chats}"])
    assert result.returncode == 0, result.stderr
    assert f"model={tiny_model_dir}" in result.stdout and "model=smollm2" not in result.stdout
    assert "model=smollm2" in run_ft(["validate"]).stdout


def test_first_party_plugins_import_only_the_public_api():
    repo = Path(__file__).resolve().parent.parent
    offenders = []
    files = [p for p in repo.glob("plugins/*/**/*.py") if "tests" not in p.relative_to(repo).parts]
    for path in [*files, *repo.glob("examples/*/ft_*/**/*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith(("from ft.", "import ft.", "import ft ", "from ft ")) or stripped == "import ft":
                if not stripped.startswith(("from ft.api ", "import ft.api")):
                    offenders.append(f"{path.relative_to(repo)}:{number}: {stripped}")
    assert not offenders, "plugins must import only ft.api:\n" + "\n".join(offenders)
