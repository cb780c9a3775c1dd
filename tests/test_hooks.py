"""One test per hook of the contract (``test_hook_<name>``), and the contract is documented in docs/plugins.md.

Lifecycle hooks are checked on one recorded tiny run (a spy implements every one of them, returning
``None`` from "who builds X" hooks unless the test is that it takes one over); config-time hooks on the
real CLI with a small installed plugin.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from ft import hookimpl, hookspecs
from ft_testing import build_context, install_fake_plugin, run_ft, run_lifecycle, write_chat_rows

REPO = Path(__file__).resolve().parent.parent


def spec_names() -> list[str]:
    return [n for n, f in vars(hookspecs).items() if inspect.isfunction(f) and hasattr(f, "ft_spec")]


def test_every_hook_is_documented_in_docs_plugins_md_with_its_signature():
    doc = (REPO / "docs" / "plugins.md").read_text()
    for name in spec_names():
        fn = getattr(hookspecs, name)
        section = re.search(rf"^### `{name}`\n\n`([^`]*)`", doc, re.MULTILINE)
        assert section, f"docs/plugins.md has no section for the hook '{name}'"
        assert section.group(1) == f"{name}{inspect.signature(fn)}".replace("'", ""), f"'{name}' signature out of date"
        kind = "firstresult" if fn.ft_spec.get("firstresult") else "collected"
        assert doc[section.end():section.end() + 60].lstrip(" (").startswith(kind), name


def test_every_hook_has_a_test_of_its_own():
    tests = {n for n, f in globals().items() if n.startswith("test_hook_") and callable(f)}
    missing = [n for n in spec_names() if f"test_hook_{n}" not in tests]
    assert not missing, f"hooks without a test_hook_<name> in tests/test_hooks.py: {missing}"


def test_every_firstresult_hook_has_a_capability_and_no_other_does():
    firstresult = {n for n in spec_names() if getattr(hookspecs, n).ft_spec.get("firstresult")}
    assert firstresult == set(hookspecs.CAPABILITIES)


# -- one recorded run ----------------------------------------------------------------------------------


def spy_arguments_class() -> type:
    """A ``TrainingArguments`` subclass at module level (the trainer pickles its arguments into checkpoints)."""
    global SpyArguments
    if "SpyArguments" not in globals():
        from transformers import TrainingArguments

        class SpyArguments(TrainingArguments):  # noqa: N801 - a class, registered under its module name
            pass

        SpyArguments.__qualname__ = "SpyArguments"
        globals()["SpyArguments"] = SpyArguments
    return globals()["SpyArguments"]


class Recorder:
    """Implements every lifecycle hook; records when each ran and what the context held then."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.args_class: type | None = None

    def note(self, name: str, ctx: Any, **extra: Any) -> None:
        self.events.append((name, {"tokenizer": ctx.tokenizer is not None, "datasets": ctx.datasets.train is not None,
                                   "args": ctx.args is not None, "model": ctx.model is not None,
                                   "trainer": ctx.trainer is not None, **extra}))

    def first(self, name: str) -> dict[str, Any]:
        return next(info for n, info in self.events if n == name)

    def all(self, name: str) -> list[dict[str, Any]]:
        return [info for n, info in self.events if n == name]

    def order(self) -> list[str]:
        return list(dict.fromkeys(n for n, _ in self.events))

    @hookimpl
    def load_tokenizer(self, ctx):
        self.note("load_tokenizer", ctx)

    @hookimpl
    def prepare_dataset(self, ctx):
        self.note("prepare_dataset", ctx)

    @hookimpl
    def training_args(self, ctx):
        self.note("training_args", ctx)
        return {"logging_nan_inf_filter": False}

    @hookimpl
    def training_args_class(self, ctx):
        self.note("training_args_class", ctx)
        self.args_class = spy_arguments_class()
        return self.args_class

    @hookimpl
    def pre_model_load(self, ctx):
        self.note("pre_model_load", ctx)
        return {"attn_implementation": "eager"}

    @hookimpl
    def load_model(self, ctx, load_kwargs):
        self.note("load_model", ctx, load_kwargs=dict(load_kwargs))

    @hookimpl
    def prepare_model(self, ctx):
        self.note("prepare_model", ctx)

    @hookimpl
    def adapt_model(self, ctx):
        self.note("adapt_model", ctx)

    @hookimpl
    def post_model_load(self, ctx):
        self.note("post_model_load", ctx, attention=ctx.model.config._attn_implementation)

    @hookimpl
    def load_reference_model(self, ctx, role, source, load_kwargs):
        self.note("load_reference_model", ctx, role=role)

    @hookimpl
    def collator(self, ctx):
        self.note("collator", ctx)

    @hookimpl
    def batch_sampler(self, ctx, dataset, split):
        self.note("batch_sampler", ctx, split=split, rows=len(dataset))

    @hookimpl
    def callbacks(self, ctx):
        from transformers import TrainerCallback

        recorder = self

        class Began(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                recorder.events.append(("callback:on_train_begin", {}))

        self.note("callbacks", ctx)
        return [Began()]

    @hookimpl
    def create_trainer(self, ctx):
        self.note("create_trainer", ctx)

    @hookimpl
    def post_trainer_create(self, ctx):
        self.note("post_trainer_create", ctx, trainer_class=type(ctx.trainer).__name__)

    @hookimpl
    def process_batch(self, ctx, batch, training):
        labels = batch["labels"]
        self.note("process_batch", ctx, training=training, trained=int((labels[:, 1:] != -100).sum()))

    @hookimpl(wrapper=True)
    def loss(self, ctx, call):
        result = yield
        self.note("loss", ctx, training=call.training, num_items=None if call.num_items_in_batch is None
                  else int(call.num_items_in_batch), value=float(result.loss))
        return result

    @hookimpl(wrapper=True)
    def run_training(self, ctx):
        output = yield
        self.note("run_training", ctx, global_step=output.global_step)
        return output

    @hookimpl
    def post_train(self, ctx, metrics):
        self.note("post_train", ctx, metrics=sorted(metrics))
        metrics["spy_score"] = 0.5

    @hookimpl
    def save_model(self, ctx, output_dir):
        self.note("save_model", ctx, exists=Path(output_dir).exists())

    @hookimpl
    def post_save(self, ctx, output_dir):
        self.note("post_save", ctx, files=sorted(p.name for p in Path(output_dir).iterdir()))


@pytest.fixture(scope="module")
def recorded(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recorded")
    rows = write_chat_rows(tmp / "chat.jsonl", n=20)
    recorder = Recorder()
    metrics = run_lifecycle([f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}", "data.val_size=4",
                             "trainer.micro_batch_size=4", "trainer.max_steps=2", "trainer.logging_steps=1",
                             "run.plot=false"], tmp / "run", recorder)
    return recorder, metrics, tmp / "run"


LIFECYCLE_ORDER = [
    "load_tokenizer", "prepare_dataset", "training_args", "training_args_class", "pre_model_load", "load_model",
    "prepare_model", "adapt_model", "post_model_load", "collator", "batch_sampler", "callbacks",
    "create_trainer", "post_trainer_create", "process_batch", "loss",
    "run_training", "post_train", "save_model", "post_save",
]


def test_the_lifecycle_calls_hooks_in_the_documented_order(recorded):
    recorder, _, _ = recorded
    order = [n for n in recorder.order() if not n.startswith("callback:")]
    assert order == LIFECYCLE_ORDER


def test_hook_load_tokenizer(recorded):
    recorder, _, _ = recorded
    assert recorder.order()[0] == "load_tokenizer" and not recorder.first("load_tokenizer")["tokenizer"]


def test_hook_prepare_dataset(recorded):
    recorder, _, _ = recorded
    seen = recorder.first("prepare_dataset")
    assert seen["tokenizer"] and not seen["datasets"] and not seen["model"]


def test_hook_training_args(recorded):
    recorder, _, run_dir = recorded
    assert recorder.first("training_args")["datasets"] and not recorder.first("training_args")["model"]


def test_hook_training_args_class(recorded):
    recorder, _, _ = recorded
    assert recorder.args_class is not None
    assert recorder.first("pre_model_load")["args"]  # the arguments object exists before the model loads


def test_hook_pre_model_load(recorded):
    recorder, _, _ = recorded
    assert recorder.first("load_model")["load_kwargs"] == {"attn_implementation": "eager"}
    assert recorder.first("post_model_load")["attention"] == "eager"  # the contributed kwarg reached from_pretrained


def test_hook_load_model(recorded):
    recorder, _, _ = recorded
    assert not recorder.first("load_model")["model"] and recorder.first("prepare_model")["model"]


def test_hook_prepare_model(recorded):
    recorder, _, _ = recorded
    order = recorder.order()
    assert order.index("load_model") < order.index("prepare_model") < order.index("adapt_model")


def test_hook_adapt_model(recorded):
    recorder, _, _ = recorded
    order = recorder.order()
    assert order.index("prepare_model") < order.index("adapt_model") < order.index("post_model_load")


def test_hook_post_model_load(recorded):
    recorder, _, _ = recorded
    seen = recorder.first("post_model_load")
    assert seen["model"] and not seen["trainer"]


def test_hook_gather_weights(tiny_model_dir, tmp_path):
    """Every manager a plugin returns is entered around a block that needs whole weights; None is skipped."""
    import contextlib

    from ft.api import gathered_weights

    seen: list[str] = []

    class Gatherer:
        @hookimpl
        def gather_weights(self, ctx, model):
            @contextlib.contextmanager
            def gather():
                seen.append(f"gather {type(model).__name__}")
                yield
                seen.append("release")

            return gather()

    class AlreadyWhole:
        @hookimpl
        def gather_weights(self, ctx, model):
            return None

    rows = write_chat_rows(tmp_path / "chat.jsonl", n=8)
    ctx = build_context([f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}"], tmp_path / "run",
                        Gatherer(), AlreadyWhole())
    with gathered_weights(ctx):
        seen.append("forward")
    assert seen == [f"gather {type(ctx.model).__name__}", "forward", "release"]


def test_hook_load_reference_model(tiny_model_dir, tmp_path):
    import torch

    rows = write_chat_rows(tmp_path / "chat.jsonl", n=8)
    ctx = build_context([f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}"], tmp_path / "run")
    copy = ctx.pm.hook.load_reference_model(ctx=ctx, role="reference", source=None, load_kwargs=None)
    assert copy is not ctx.model and not copy.training and not any(p.requires_grad for p in copy.parameters())
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), ctx.model.state_dict().values()))
    teacher = ctx.pm.hook.load_reference_model(ctx=ctx, role="teacher", source=str(tiny_model_dir), load_kwargs=None)
    assert teacher is not copy and not teacher.training and ctx.reference_model is teacher
    assert not any(p.requires_grad for p in teacher.parameters())


def test_hook_collator(recorded):
    recorder, _, _ = recorded
    assert recorder.first("collator")["model"]  # after the model phases: a collator may check the real model


def test_hook_batch_sampler(recorded):
    recorder, _, _ = recorded
    calls = recorder.all("batch_sampler")
    assert [c["split"] for c in calls] == ["train", "eval"] and calls[1]["rows"] == 4


def test_hook_callbacks(recorded):
    recorder, _, _ = recorded
    assert "callback:on_train_begin" in recorder.order()


def test_hook_create_trainer(recorded):
    recorder, _, _ = recorded
    assert recorder.first("create_trainer")["model"] and not recorder.first("create_trainer")["trainer"]


def test_hook_post_trainer_create(recorded):
    recorder, _, _ = recorded
    assert recorder.first("post_trainer_create")["trainer_class"] == "FtTrainer"


def test_hook_process_batch(recorded):
    recorder, _, _ = recorded
    calls = recorder.all("process_batch")
    assert [c["training"] for c in calls if c["training"]] == [True, True]  # 2 steps, 1 batch each
    assert any(not c["training"] for c in calls)  # evaluation batches too


def test_hook_loss(recorded):
    recorder, _, _ = recorded
    batches = [c for c in recorder.all("process_batch") if c["training"]]
    losses = [c for c in recorder.all("loss") if c["training"]]
    assert [c["num_items"] for c in losses] == [c["trained"] for c in batches]  # trained, shifted labels of the step
    evals = [c for c in recorder.all("loss") if not c["training"]]
    assert evals and [c["num_items"] for c in evals] == [c["trained"] for c in recorder.all("process_batch")
                                                         if not c["training"]]  # of the batch itself


def test_hook_run_training(recorded):
    recorder, _, _ = recorded
    assert recorder.first("run_training")["global_step"] == 2


def test_hook_post_train(recorded):
    recorder, _, run_dir = recorded
    assert "train_loss" in recorder.first("post_train")["metrics"]
    assert json.loads((run_dir / "summary.json").read_text())["spy_score"] == 0.5


def test_hook_save_model(recorded):
    recorder, _, run_dir = recorded
    assert not recorder.first("save_model")["exists"]
    assert (run_dir / "model" / "model.safetensors").is_file() and not (run_dir / "model.partial").exists()


def test_hook_post_save(recorded):
    recorder, _, _ = recorded
    assert "model.safetensors" in recorder.first("post_save")["files"]


BACKWARDS_SAMPLER = '''
from ft.api import PluginInfo, hookimpl

FT_PLUGIN = PluginInfo(name="backwards", capabilities=("sampler",))


@hookimpl
def text_sampler(method_config, model, tokenizer):
    if method_config.get("name") != "sft":
        return None
    # the prompt's last few tokens backwards, then the end of the turn: easy to predict, nothing like generate
    return lambda prompt_ids, max_new_tokens: [ids[::-1][:max_new_tokens] + [tokenizer.eos_token_id] for ids in prompt_ids]
'''


def test_hook_text_sampler(recorded, tmp_path):
    """A method plugin's sampler replaces model.generate in ft generate (asked of every installed plugin)."""
    _, _, run_dir = recorded
    site = tmp_path / "site"
    install_fake_plugin(site, "ft-backwards", "backwards", BACKWARDS_SAMPLER)
    sampled = run_ft(["generate", str(run_dir), "--prompt", "Name a colour.", "--max-new-tokens", "4"], site=site)
    assert sampled.returncode == 0, sampled.stderr
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Name a colour."}], tokenize=False,
                                         add_generation_prompt=True)
    prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert sampled.stdout.strip() == tokenizer.decode(prompt[::-1][:4], skip_special_tokens=True).strip()
    assert "(sampler of method=sft)" in sampled.stderr
    plain = run_ft(["generate", str(run_dir), "--prompt", "Name a colour.", "--max-new-tokens", "4"])
    assert plain.returncode == 0 and "sampler of" not in plain.stderr


def test_a_taken_over_arguments_class_is_the_trainers(tiny_model_dir, tmp_path):
    recorder = Recorder()
    rows = write_chat_rows(tmp_path / "chat.jsonl", n=8)
    ctx = build_context([f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}"], tmp_path / "run",
                        recorder)
    assert type(ctx.args) is recorder.args_class and ctx.args.logging_nan_inf_filter is False
    assert ctx.trainer.args is ctx.args


# -- config-time hooks, on the real CLI ---------------------------------------------------------------

DEMO = '''
from dataclasses import dataclass
from ft.api import Command, ConfigError, PluginInfo, bounded, hookimpl

FT_PLUGIN = PluginInfo(name="demo", description="exercises the config-time hooks", capabilities=("inference_loader",))


@dataclass
class DemoConfig:
    every: int = bounded(1, ge=1)
    label: str = "x"


@hookimpl
def config_schemas():
    return {"logger/demo": DemoConfig}


@hookimpl
def validate_config(cfg, choices):
    if choices.get("logger") == "demo" and cfg.logger.label == "forbidden":
        raise ConfigError("logger.label='forbidden' is not valid: pick another label")


def say_hello(args):
    print(f"hello {args.who}")
    return 0


@hookimpl
def cli_commands():
    return [Command(name="hello", help="say hello", run=say_hello,
                    add_arguments=lambda parser: parser.add_argument("who"))]


@hookimpl
def command_arguments(command, args, p_flags):
    if "--every" not in args:
        return None
    at = args.index("--every")
    return ["+logger=demo", f"logger.every={args[at + 1]}", *args[:at], *args[at + 2:]]


def format_qa(row, tokenizer, options):
    prompt = tokenizer("Q: " + row["q"] + "\\nA: ")["input_ids"]
    answer = tokenizer(row["a"])["input_ids"]
    return {"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer}


@hookimpl
def dataset_formats():
    return {"qa": format_qa}


def says_please(prompts, completions, **columns):
    return [1.0 if "please" in str(c).lower() else 0.0 for c in completions]


@hookimpl
def reward_functions():
    return {"says_please": says_please}


@hookimpl
def config_defaults(choices, config):
    return {"logger.label": "from-the-plugin"} if choices.get("logger") == "demo" else None


@hookimpl
def post_sweep(sweep_dir, results, objective, direction):
    import json

    (sweep_dir / "demo.json").write_text(json.dumps({"jobs": [[str(r.run_dir), r.status] for r in results],
                                                     "objective": objective, "direction": direction}))


@hookimpl
def load_for_inference(folder, run_config, options):
    import json
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    marker = folder / "demo_model.json"
    if not marker.is_file():
        return None
    source = Path(json.loads(marker.read_text())["weights"])
    return AutoModelForCausalLM.from_pretrained(source, **options["load_kwargs"]), source, f"demo model from {source}"
'''


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("demo-site")
    install_fake_plugin(site, "ft-demo", "demo", DEMO, {"logger/demo.yaml": "every: 1\nlabel: x\n"})
    return site


def test_hook_config_schemas(demo_site):
    assert run_ft(["validate", "+logger=demo", "logger.every=2"], site=demo_site).returncode == 0
    bad = run_ft(["validate", "+logger=demo", "logger.every=0"], site=demo_site)
    assert bad.returncode == 2 and "logger.every=0 is not valid: expected an integer >= 1" in bad.stderr
    unknown = run_ft(["validate", "+logger=demo", "+logger.evry=2"], site=demo_site)
    assert unknown.returncode == 2 and "did you mean 'every'" in unknown.stderr


OTHER_LOGGER = '''
from dataclasses import dataclass
from ft.api import PluginInfo, hookimpl

FT_PLUGIN = PluginInfo(name="{name}")


@dataclass
class {cls}:
    {field}: str = "y"


@hookimpl
def config_schemas():
    return {{"logger/{name}": {cls}}}


@hookimpl
def validate_config(cfg, choices):
    print("{name} sees", choices["logger"], type(cfg.logger).__name__, flush=True)
'''


def test_several_options_of_one_group_merge_their_configs_and_schemas(demo_site, tmp_path):
    """logger=[a,b] (Hydra's list of options): both plugins active, both configs in one typed section."""
    import shutil

    site = tmp_path / "site"
    shutil.copytree(demo_site, site)
    install_fake_plugin(site, "ft-other", "other", OTHER_LOGGER.format(name="other", cls="OtherConfig", field="tag"),
                        {"logger/other.yaml": "tag: z\n"})
    install_fake_plugin(site, "ft-clash", "clash", OTHER_LOGGER.format(name="clash", cls="ClashConfig", field="label"),
                        {"logger/clash.yaml": "label: q\n"})
    both = run_ft(["config", "show", "logger=[demo,other]", "logger.every=3"], site=site)
    assert both.returncode == 0, both.stderr
    assert "logger:\n  every: 3\n  label: x\n  tag: z\n" in both.stdout
    assert "other sees demo,other DemoConfig_OtherConfig" in both.stdout
    assert "logger=demo,other" in both.stdout.splitlines()[1]
    bad = run_ft(["validate", "logger=[demo,other]", "logger.every=0"], site=site)
    assert bad.returncode == 2 and "logger.every=0 is not valid" in bad.stderr
    clash = run_ft(["validate", "logger=[demo,clash]"], site=site)
    assert clash.returncode == 2 and "DemoConfig and ClashConfig both declare 'label'" in clash.stderr


def test_hook_reward_functions(demo_site):
    """A reward from any installed plugin is a valid name in method.rewards; an unknown one lists them all."""
    ok = run_ft(["validate", "+method=grpo", "method.rewards=[{name: says_please, weight: 0.5}]"], site=demo_site)
    assert ok.returncode == 0, ok.stderr
    bad = run_ft(["validate", "+method=grpo", "method.rewards=[{name: says_pleese}]"], site=demo_site)
    assert bad.returncode == 2 and "no such reward function (did you mean 'says_please'?)" in bad.stderr
    assert "exact_match" in bad.stderr and "says_please" in bad.stderr


def test_hook_config_defaults(demo_site):
    """A plugin's default is config: shown and validated like a file's value, below what the user types."""
    shown = run_ft(["config", "show", "+logger=demo"], site=demo_site)
    assert shown.returncode == 0, shown.stderr
    assert "label: from-the-plugin" in shown.stdout
    typed = run_ft(["config", "show", "+logger=demo", "logger.label=mine"], site=demo_site)
    assert "label: mine" in typed.stdout and "from-the-plugin" not in typed.stdout
    refused = run_ft(["validate", "+logger=demo", "logger.label=forbidden"], site=demo_site)
    assert refused.returncode == 2  # validation sees the user's value over the plugin's


def test_hook_post_sweep(demo_site, tiny_model_dir, tmp_path):
    """After the last job of ft run -m, every installed plugin sees each job's folder, status and the objective."""
    rows = write_chat_rows(tmp_path / "chat.jsonl", n=8)
    swept = run_ft(["run", "-m", f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}",
                    "trainer.max_steps=1", "run.plot=false", "run.save_final_model=false", "optim.lr=1e-3,2e-3",
                    "sweep.objective=train_loss", f"hydra.sweep.dir={tmp_path / 'sweep'}"], site=demo_site)
    assert swept.returncode == 0, swept.stderr[-2000:]
    seen = json.loads((tmp_path / "sweep" / "demo.json").read_text())
    assert seen == {"jobs": [[str(tmp_path / "sweep" / "0"), "ok"], [str(tmp_path / "sweep" / "1"), "ok"]],
                    "objective": "train_loss", "direction": "minimize"}


def test_hook_load_for_inference(demo_site, tiny_model_dir, tmp_path):
    """A folder a plugin recognises is loaded by that plugin for ft generate; other folders are not its."""
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "demo_model.json").write_text(json.dumps({"weights": str(tiny_model_dir)}))
    generated = run_ft(["generate", str(folder), "--prompt", "Hi", "--max-new-tokens", "2"], site=demo_site)
    assert generated.returncode == 0, generated.stderr[-2000:]
    assert f"demo model from {tiny_model_dir}" in generated.stderr
    plain = run_ft(["generate", str(tiny_model_dir), "--prompt", "Hi", "--max-new-tokens", "2"], site=demo_site)
    assert plain.returncode == 0 and f"model {tiny_model_dir}" in plain.stderr


def test_hook_validate_config(demo_site):
    bad = run_ft(["validate", "+logger=demo", "logger.label=forbidden"], site=demo_site)
    assert bad.returncode == 2 and bad.stderr.strip() == "ft: error: logger.label='forbidden' is not valid: pick another label"


def test_hook_cli_commands(demo_site):
    result = run_ft(["hello", "world"], site=demo_site)
    assert result.returncode == 0 and result.stdout.strip() == "hello world"
    assert "hello" in run_ft(["--help"], site=demo_site).stdout


def test_hook_command_arguments(demo_site):
    shown = run_ft(["config", "show", "--every", "3"], site=demo_site)
    assert shown.returncode == 0 and "every: 3" in shown.stdout, shown.stderr
    later = run_ft(["config", "show", "--every", "3", "logger.every=5"], site=demo_site)  # typed after it: wins
    assert later.returncode == 0 and "every: 5" in later.stdout, later.stderr
    unknown = run_ft(["validate", "--evry", "3"], site=demo_site)  # no plugin takes it: ft's own line
    assert unknown.returncode == 2 and "unknown option '--evry'" in unknown.stderr


def test_hook_dataset_formats(demo_site, tiny_model_dir, tmp_path):
    rows = tmp_path / "qa.jsonl"
    rows.write_text(json.dumps({"q": "2+2?", "a": "4"}) + "\n" + json.dumps({"q": "3+3?", "a": "6"}) + "\n")
    out = tmp_path / "out.jsonl"
    result = run_ft(["preprocess", "data=alpaca", f"data.path={rows}", "data.format=qa",
                     f"model.name_or_path={tiny_model_dir}", f"run.root={tmp_path}", "--export", str(out)],
                    site=demo_site, env={"FT_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    first = json.loads(out.read_text().splitlines()[0])
    trained = [t for t, label in zip(first["input_ids"], first["labels"]) if label != -100]
    assert trained and first["labels"][0] == -100 and trained == first["input_ids"][-len(trained):]
    misspelt = run_ft(["validate", "data=alpaca", f"data.path={rows}", "data.format=qaa"], site=demo_site)
    assert misspelt.returncode == 2 and "did you mean 'qa'?" in misspelt.stderr


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))


QUEUE = '''
import json, os
from pathlib import Path
from ft.api import PluginInfo, hookimpl, validate_all

FT_PLUGIN = PluginInfo(name="queue", description="queues sweeps elsewhere", capabilities=("sweeper",))


@hookimpl
def run_sweep(session, overrides, p_flags):
    _, jobs = validate_all(session, overrides, multirun=True)
    Path(os.environ["QUEUE_FILE"]).write_text(json.dumps([job.composed.overrides for job in jobs]))
    return 3
'''


def test_hook_run_sweep(tiny_model_dir, tmp_path):
    """A plugin with the sweeper capability takes ft run -m over: it gets every job validated, and its exit code."""
    site = tmp_path / "site"
    install_fake_plugin(site, "ft-queue", "queue", QUEUE)
    queued = tmp_path / "queued.json"
    args = ["run", "-m", f"model.name_or_path={tiny_model_dir}", "optim.lr=1e-3,2e-3", f"run.root={tmp_path}/runs"]
    result = run_ft(args, site=site, env={"QUEUE_FILE": str(queued)})
    assert result.returncode == 3, result.stderr[-2000:]
    jobs = json.loads(queued.read_text())
    assert [[o for o in job if o.startswith("optim.lr")] for job in jobs] == [["optim.lr=0.001"], ["optim.lr=0.002"]]
    assert not (tmp_path / "runs").exists()  # ft-sweeps, the builtin fallback, ran nothing
    bad = run_ft([*args, "trainer.max_steps=-5"], site=site, env={"QUEUE_FILE": str(tmp_path / "bad.json")})
    assert bad.returncode == 2 and not (tmp_path / "bad.json").exists()
    left_out = run_ft(["-p", "no:queue", "-p", "no:sweeps", *args], site=site)
    assert left_out.returncode == 2 and "no installed plugin runs a sweep" in left_out.stderr
