"""Test helpers for ft and its plugins, and pytest fixtures when pytest is installed (``pytest11`` entry point).

Tiny random models and a locally trained tokenizer, so tests run offline in seconds. The helpers
(:func:`build_tiny_model`, :func:`run_lifecycle`, :func:`run_ft`, :func:`write_chat_rows`) need no pytest;
the fixtures (``tiny_model_dir``, ``chat_file``, ``test_data``) exist when pytest is importable.

The tokenizer is a byte-level BPE trained with ``tokenizers`` on real text shipped with the kit
(GSM8K questions and answers, :data:`TEST_DATA`), with ChatML special tokens and a
ChatML chat template like SmolLM2's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ft.api import (
    hookimpl,
    run_lifecycle,  # noqa: F401 - part of the kit: run overrides like ft run, in this process
)

try:  # the helpers work without pytest; only the fixtures need it
    import pytest
except ImportError:  # pragma: no cover - a plugin author's environment without pytest
    pytest = None  # type: ignore[assignment]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

#: Small slices of public data sets shipped with the kit (sources and licences in data/README.md): tests read
#: these, never a folder outside the repository.
TEST_DATA = Path(__file__).resolve().parent / "data"

_FALLBACK_TEXT = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May? Weng earns 12 an hour for babysitting. "
    "Below is an instruction that describes a task. Write a response that appropriately completes the request. "
    "### Instruction: ### Input: ### Response: Sort the numbers in ascending order. The answer is 72."
)


def corpus() -> list[str]:
    lines: list[str] = [_FALLBACK_TEXT] * 20
    gsm8k = TEST_DATA / "gsm8k" / "train.jsonl"
    if gsm8k.is_file():
        with gsm8k.open() as handle:
            for index, line in enumerate(handle):
                if index >= 1500:
                    break
                row = json.loads(line)
                lines += [row["question"], row["answer"]]
    return lines


def build_tokenizer(out_dir: Path, vocab_size: int = 600):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", bos_token="<|im_start|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Save a tiny random Llama model and its tokenizer into ``out_dir``; return the folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def _fixture(*args, **kwargs):
    """``pytest.fixture`` when pytest is installed; otherwise leave the function as it is."""
    if pytest is None:
        return (lambda fn: fn) if not (len(args) == 1 and callable(args[0])) else args[0]
    return pytest.fixture(*args, **kwargs)


@_fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama with a locally trained ChatML tokenizer (built once per session)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@_fixture(scope="session")
def test_data() -> Path:
    """The kit's slices of public data sets (:data:`TEST_DATA`): GSM8K, GPTeacher, HH-RLHF."""
    return TEST_DATA


def write_chat_rows(path: Path, n: int = 48) -> Path:
    """A small chat dataset: a few Q/A pairs repeated, so a tiny model can fit it quickly."""
    pairs = [("What is 2 plus 3?", "2 plus 3 is 5."), ("Name a colour.", "Blue is a colour."),
             ("Sort 3, 1, 2.", "1, 2, 3")]
    rows = []
    for i in range(n):
        question, answer = pairs[i % len(pairs)]
        rows.append({"messages": [{"role": "user", "content": question},
                                  {"role": "assistant", "content": answer}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@_fixture
def chat_file(tmp_path) -> Path:
    """A small chat .jsonl file (see :func:`write_chat_rows`)."""
    return write_chat_rows(tmp_path / "chat.jsonl")


def build_context(overrides: list[str], run_dir: Path, *spies: object):
    """A run context taken through ft's lifecycle up to ``create_trainer`` (the same hook calls as
    ``ft run``, on one process), so tests can look at the trainer, the model and the data before training."""
    from transformers import set_seed

    from ft.api import Ranks, build_trainer, prepare_run

    run_dir.mkdir(parents=True, exist_ok=True)
    prepared = prepare_run(overrides, spies=spies)
    ctx = prepared.context(run_dir, Ranks())
    set_seed(ctx.cfg.seed)
    build_trainer(ctx, Ranks())
    return ctx


def install_fake_plugin(site: Path, dist: str, name: str, module_source: str, conf: dict[str, str] | None = None,
                        conf_entry_point: str | None = None) -> Path:
    """Install a plugin distribution by hand into ``site`` (put it on ``PYTHONPATH``): package ``ft_<name>``
    with ``plugin.py``, optional ``conf/<group>/<option>.yaml`` files, and a ``.dist-info`` with its entry
    points. ``conf_entry_point`` names the ``ft.conf`` entry (default: the plugin's own name)."""
    import textwrap

    package = site / f"ft_{name}"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(textwrap.dedent(module_source))
    entry_points = f"[ft]\n{name} = ft_{name}.plugin\n"
    if conf is not None:
        (package / "conf").mkdir()
        (package / "conf" / "__init__.py").write_text("")
        for rel, text in conf.items():
            target = package / "conf" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        entry_points += f"\n[ft.conf]\n{conf_entry_point or name} = ft_{name}.conf\n"
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(entry_points)
    return package


def run_ft(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 900,
           site: Path | None = None):
    """Run the ``ft`` command in a subprocess (the real CLI, as a user types it); ``site`` is a folder of
    :func:`install_fake_plugin` distributions to put on the path."""
    import subprocess
    import sys

    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    if site is not None:
        full_env["PYTHONPATH"] = os.pathsep.join([str(site), full_env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "ft.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


# -- loss kernels: the plain computation they must equal, and training runs to compare ---------------------


def reference_linear_cross_entropy(hidden: Any, weight: Any, targets: Any, bias: Any = None, *, ignore_index: int = -100,
                                   softcap: float | None = None, z_loss: float = 0.0,
                                   label_smoothing: float = 0.0) -> Any:
    """``F.cross_entropy(hidden @ weight.T)`` summed over trained tokens, all logits at once in fp32 (plus
    soft-capping, PaLM's z-loss and label smoothing when asked): what a fused kernel must equal."""
    import torch

    logits = (hidden @ weight.T + (bias if bias is not None else 0)).float()
    logits = logits.reshape(-1, logits.size(-1))
    targets = targets.reshape(-1)
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    loss = torch.nn.functional.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="sum",
                                             label_smoothing=label_smoothing)
    if z_loss:
        loss = loss + z_loss * torch.logsumexp(logits[targets != ignore_index], dim=-1).square().sum()
    return loss


def linear_ce_case(tokens: int = 61, hidden: int = 24, vocab: int = 211, ignored_every: int = 3, dtype: Any = None,
                   device: str = "cpu", seed: int = 0) -> tuple[Any, Any, Any]:
    """``(hidden [tokens, H], weight [V, H], targets [tokens])``, every ``ignored_every``-th target ignored."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    dtype = dtype or torch.float32
    h = (torch.randn(tokens, hidden, generator=generator) * 0.5).to(device, dtype)
    w = (torch.randn(vocab, hidden, generator=generator) * 0.5).to(device, dtype)
    t = torch.randint(0, vocab, (tokens,), generator=generator).to(device)
    if ignored_every:
        t[::ignored_every] = -100
    return h, w, t


def assert_linear_ce_matches(fn: Any, hidden: Any, weight: Any, targets: Any, rel: float = 1e-5,
                             grad_tol: float = 1e-5, **options: Any) -> None:
    """``fn(hidden, weight, targets, **options)`` (a summed loss) equals :func:`reference_linear_cross_entropy`
    on the same numbers in fp32: the mean loss to ``rel``, the gradients of the mean loss for the hidden
    states and the head weight within ``grad_tol`` (absolute at 1e-5, else relative to the largest one)."""
    count = max(int((targets != -100).sum()), 1)

    def run(f: Any, h: Any, w: Any, **kw: Any) -> tuple[Any, Any, Any]:
        h, w = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
        loss = f(h, w, targets, **kw) / count
        loss.backward()
        return loss.detach().float(), h.grad.float(), w.grad.float()

    got = run(fn, hidden, weight, **options)
    want = run(reference_linear_cross_entropy, hidden.float(), weight.float(), **options)
    assert abs(got[0].item() - want[0].item()) <= rel * max(1.0, abs(want[0].item())), (got[0].item(), want[0].item())
    for name, mine, theirs in (("hidden", got[1], want[1]), ("weight", got[2], want[2])):
        scale = theirs.abs().max().item() if grad_tol > 1e-5 else 1.0
        error = (mine - theirs).abs().max().item()
        assert error <= grad_tol * max(scale, 1e-12), f"gradient of the {name}: off by {error:.3g}"


class TrainingRecorder:
    """A spy plugin: every training batch's loss as the trainer receives it, and the trainable weights
    at the start and at the end (for :func:`assert_same_training`)."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.initial: dict[str, Any] = {}
        self.final: dict[str, Any] = {}

    @staticmethod
    def _weights(ctx: Any) -> dict[str, Any]:
        return {n: p.detach().clone() for n, p in ctx.model.named_parameters() if p.requires_grad}

    @hookimpl
    def post_trainer_create(self, ctx: Any) -> None:
        self.initial = self._weights(ctx)

    @hookimpl(wrapper=True)
    def loss(self, ctx: Any, call: Any):
        result = yield
        if call.training:
            self.losses.append(float(result.loss.detach()))
        return result

    @hookimpl
    def post_train(self, ctx: Any, metrics: dict[str, Any]) -> None:
        self.final = self._weights(ctx)


class WeightsSpy:
    """A spy plugin: every parameter before and after training, and the names of those that train."""

    @hookimpl
    def post_trainer_create(self, ctx: Any) -> None:
        self.before = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}
        self.trainable = {n for n, p in ctx.model.named_parameters() if p.requires_grad}

    @hookimpl
    def post_train(self, ctx: Any, metrics: dict[str, Any]) -> None:
        self.after = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}


#: The training setups a loss kernel must serve exactly like the method's own loss (overrides for :func:`train_tiny_sft`).
LOSS_KERNEL_SETUPS: dict[str, list[str]] = {
    "full": [],
    "lora": ["+adapter=lora"],
    "multipack": ["+packing=multipack", "data.sequence_len=128", "trainer.micro_batch_size=1"],
    "accumulation": ["trainer.gradient_accumulation_steps=3", "trainer.micro_batch_size=2"],
}


def train_tiny_sft(model_dir: Path, run_dir: Path, overrides: list[str], rows: int = 24, steps: int = 5) -> TrainingRecorder:
    """A short SFT run of the tiny model on chat rows (lr 1e-3, so the weights move), recorded."""
    data = write_chat_rows(run_dir.parent / "chat.jsonl", n=rows)
    recorder = TrainingRecorder()
    run_lifecycle([f"model.name_or_path={model_dir}", "data=chat", f"data.path={data}", "trainer.micro_batch_size=4",
                   f"trainer.max_steps={steps}", "optim.lr=1e-3", "run.plot=false", "run.save_final_model=false",
                   *overrides], run_dir, recorder)
    return recorder


def assert_same_training(plain: TrainingRecorder, other: TrainingRecorder, tol: float = 1e-4) -> None:
    """The same loss at every batch and the same trained weights (to ``tol``), after weights that moved."""
    assert len(plain.losses) == len(other.losses) > 0, (len(plain.losses), len(other.losses))
    worst = max(abs(a - b) for a, b in zip(plain.losses, other.losses))
    assert worst <= tol, f"loss curves differ by {worst:.3g}: {plain.losses} vs {other.losses}"
    moved = max((plain.final[n] - w).abs().max().item() for n, w in plain.initial.items())
    assert moved > 10 * tol, f"the weights hardly moved ({moved:.3g}): nothing to compare"
    assert plain.final.keys() == other.final.keys()
    for name, weight in plain.final.items():
        error = (other.final[name] - weight).abs().max().item()
        assert error <= tol, f"{name} differs by {error:.3g} after training"


# -- distributed runs: the same job on 1 process and on several, compared ----------------------------


def distributed_env(tmp_path: Path) -> dict[str, str]:
    """Environment for ``ft run`` jobs with several CPU processes: one thread each (2 ranks on 2 cores
    would otherwise oversubscribe), a private data cache."""
    return {"OMP_NUM_THREADS": "1", "FT_CACHE_DIR": str(tmp_path / "cache")}


def tiny_job_args(model_dir: Path, data: Path, root: Path, *overrides: str, steps: int = 4) -> list[str]:
    """``ft run`` arguments for a short fp32 SFT job of the tiny model (lr 1e-3, so the weights move),
    logging the loss at every step into ``root``."""
    return ["run", f"model.name_or_path={model_dir}", "data=chat", f"data.path={data}", f"run.root={root}",
            "trainer.logging_steps=1", f"trainer.max_steps={steps}", "optim.lr=1e-3", "optim.scheduler=constant",
            "run.plot=false", *overrides]


class JobRunner:
    """Runs short ``ft`` jobs of the tiny model on shared chat rows, each in a fresh ``run.root``, through
    the real command line (so ``dist.nproc_per_node=2`` starts real ranks)."""

    def __init__(self, model_dir: Path, base: Path) -> None:
        self.model_dir, self.base = Path(model_dir), Path(base)
        self.data = write_chat_rows(self.base / "chat.jsonl", n=32)
        self.env = distributed_env(self.base)
        self._count = 0

    def __call__(self, *overrides: str, steps: int = 4, site: Path | None = None, multirun: bool = False,
                 command: list[str] | None = None, env: dict[str, str] | None = None) -> tuple[Path, Any]:
        """``(run.root, completed process)`` of ``ft run <tiny job> <overrides>`` (or ``command`` as given)."""
        self._count += 1
        root = self.base / f"runs{self._count}"
        args = command or tiny_job_args(self.model_dir, self.data, root, *overrides, steps=steps)
        if multirun:
            args.insert(1, "-m")
        return root, run_ft(args, env={**self.env, **(env or {})}, site=site, timeout=900, cwd=self.base)

    def finished(self, *overrides: str, **kwargs: Any) -> Path:
        """The run folder of a job that must succeed."""
        root, result = self(*overrides, **kwargs)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
        return only_run(root)


@_fixture(scope="session")
def ft_job(tiny_model_dir, tmp_path_factory) -> JobRunner:
    """A :class:`JobRunner` for the session (distributed tests compare its runs)."""
    return JobRunner(tiny_model_dir, tmp_path_factory.mktemp("jobs"))


@_fixture(scope="session")
def one_process_run(ft_job) -> Path:
    """The baseline distributed runs are compared with: 1 process, micro batch 4, 4 steps (fp32)."""
    return ft_job.finished("trainer.micro_batch_size=4")


def only_run(root: Path) -> Path:
    """The one run folder under ``root`` (every rank agreed on it)."""
    runs = [p for p in Path(root).iterdir() if p.is_dir()]
    assert len(runs) == 1, f"expected one run folder under {root}, found {runs}"
    return runs[0]


def logged_losses(run_dir: Path) -> list[float]:
    """The training loss at each logged step (``metrics.jsonl``)."""
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r["loss"] for r in records if "loss" in r]


def saved_weights(model_dir: Path) -> dict[str, Any]:
    """Every tensor of the safetensors files in a saved model (or adapter) folder."""
    from safetensors.torch import load_file

    weights: dict[str, Any] = {}
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        weights.update(load_file(str(path)))
    assert weights, f"no safetensors weights in {model_dir}"
    return weights


def assert_same_run(plain: Path, other: Path, start: Path | None = None, tol: float = 1e-5) -> None:
    """Two finished runs followed the same loss curve and saved the same weights (to ``tol``); with
    ``start`` (the model trained from), the weights must also have moved, or the comparison proves nothing."""
    plain_losses, other_losses = logged_losses(plain), logged_losses(other)
    assert len(plain_losses) == len(other_losses) > 1, (plain_losses, other_losses)
    worst = max(abs(a - b) for a, b in zip(plain_losses, other_losses))
    assert worst <= tol, f"loss curves differ by {worst:.3g}: {plain_losses} vs {other_losses}"
    mine, theirs = saved_weights(plain / "model"), saved_weights(other / "model")
    assert mine.keys() == theirs.keys(), sorted(set(mine) ^ set(theirs))[:5]
    if start is not None:
        initial = saved_weights(start)
        moved = max((mine[n].float() - initial[n].float()).abs().max().item() for n in mine if n in initial)
        assert moved > 100 * tol, f"the weights hardly moved ({moved:.3g}): nothing to compare"
    for name, weight in mine.items():
        error = (theirs[name].float() - weight.float()).abs().max().item()
        assert error <= tol, f"{name} differs by {error:.3g} after training"


def assert_loads_without_ft(model_dir: Path, env: dict[str, str] | None = None) -> None:
    """The saved model loads in plain transformers, in a fresh process that never imports ft."""
    import subprocess
    import sys

    code = ("import sys; from transformers import AutoModelForCausalLM; "
            f"AutoModelForCausalLM.from_pretrained({str(model_dir)!r}); assert 'ft' not in sys.modules; print('loaded')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, cwd=str(model_dir))
    assert result.stdout.strip().endswith("loaded"), result.stderr[-2000:]


def free_port() -> int:
    """A TCP port nothing listens on now (for a rendezvous endpoint on 127.0.0.1)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
