"""Config fuzz: hundreds of bad configs each end in one clear line and exit 2 at ``ft validate``; good ones pass.

Bad values are generated from the schemas themselves (every bounded, enum, integer and boolean field of
every option ft and its first-party plugins provide), so a new field is fuzzed the day it is added.
Everything runs in-process through the real ``ft`` entry point (validation only: fast).
"""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from ft.cli import main
from ft_testing import write_chat_rows

#: The overrides that select each schema's option (``{pairs}`` and ``{chat}`` are data files).
SELECT = {
    "model": [], "optim": [], "trainer": [], "run": [], "method/sft": [],
    "data": ["data=chat", "data.path={chat}"],
    "adapter/lora": ["+adapter=lora"], "adapter/qlora": ["+adapter=qlora"],
    "packing/multipack": ["+packing=multipack"],
    "method/dpo": ["+method=dpo", "data.path={pairs}"], "method/ipo": ["+method=ipo", "data.path={pairs}"],
    "method/kto": ["+method=kto", "data.path={pairs}"], "method/orpo": ["+method=orpo", "data.path={pairs}"],
    "method/simpo": ["+method=simpo", "data.path={pairs}"], "data/preference": ["+method=dpo", "data.path={pairs}"],
}


def _schemas() -> dict[str, type]:
    from ft.runner import Session

    return {k: v for k, v in Session([]).schemas.items() if k in SELECT}


def _bad_values(field: dataclasses.Field, tp: typing.Any) -> list[str]:
    """Values that must be refused for one field."""
    from ft.schema import _literal_values, _plain_types

    values: list[str] = []
    bounds = field.metadata.get("bounds", {})
    if "ge" in bounds:
        values.append(repr(bounds["ge"] - 1))
    if "gt" in bounds:
        values.append(repr(bounds["gt"]))
    if "lt" in bounds:
        values.append(repr(bounds["lt"]))
    if "le" in bounds:
        values.append(repr(bounds["le"] + 1))
    plain = _plain_types(tp)
    if float in plain:
        values += ["nan", "inf"]
    if int in plain or float in plain:
        values.append("abc")
    if bool in plain:
        values.append("maybe")
    literals = [v for v in _literal_values(tp) if isinstance(v, str)]
    if literals:
        values.append(literals[0] + "x")
    return values


def generated_cases() -> list[list[str]]:
    cases = []
    for ref, schema in sorted(_schemas().items()):
        section = ref.split("/")[0]
        hints = typing.get_type_hints(schema)
        for field in dataclasses.fields(schema):
            for value in _bad_values(field, hints[field.name]):
                cases.append([*SELECT[ref], f"++{section}.{field.name}={value}"])
    return cases


LONG = "x" * 300
HANDWRITTEN: list[list[str]] = [
    # unknown and misspelt keys
    ["model.dtyp=float32"], ["+model.dtyp=float32"], ["optim.lrr=1e-4"], ["+trainer.micro_batch=2"],
    ["bogus=1"], ["+bogus=1"], ["run.nam=x"], ["+adapter=lora", "adapter.rr=8"], ["+adapter=lora", "+adapter.alpah=8"],
    ["+packing=multipack", "+packing.atention=auto"], ["+method=dpo", "data.path={pairs}", "+method.betta=0.2"],
    ["data=chat", "data.path={chat}", "+data.feild=x"], ["seed=abc"], ["+seeds=1"],
    # nonexistent options and groups
    ["data=nope"], ["+adapter=lorra"], ["+method=dp"], ["+packing=multipak"], ["experiment=foo"], ["+adaptr=lora"],
    ["+kernels=ligr"], ["dist=fsdpp"], ["dist=zero4"], ["model=llama"], ["optim=lion"], ["trainer=fast"],
    # distributed launch keys and combinations that cannot work
    ["dist.nproc_per_node=0"], ["dist.nnodes=2"], ["dist.node_rank=3"], ["dist.rdzv_endpoint=host"],
    ["dist=fsdp", "+adapter=qlora"], ["dist=zero2", "dist.offload_param=cpu"], ["dist=[fsdp,zero3]"],
    ["dist=fsdp", "dist.checkpoint_format=zip"], ["dist.timeout_minutes=0"],
    # files that do not exist or cannot be used
    ["data=chat", "data.path=/no/such.jsonl"], ["data=alpaca", "data.path=/no/such.json"],
    ["data=completion", "data.path=/no/such.txt"], ["model.name_or_path=/no/such/model"],
    ["model.tokenizer=/no/such/tokenizer"], ["data=chat", "data.path={chat}", "data.val_path=/no/such.jsonl"],
    ["+adapter=lora", "adapter.continue_from=/no/such/run"], ["run.resume_from=/no/such/checkpoint"],
    ["run.resume_from=last", "run.root={empty}"], ["data=chat", f"data.path=/tmp/{LONG}"],
    [f"model.name_or_path=/tmp/{LONG}"], [f"model.tokenizer=/tmp/{LONG}"], ["data=chat", "data.path={empty}"],
    ["model.name_or_path={config_only}"], ["+method=dpo", "data.path=/no/such.jsonl"],
    ["model.name_or_path=builtin:nope"], ["model.name_or_path=someorg/not-in-cache"], ["data=alpaca"],
    # conflicting options
    ["+packing=multipack", "+method=dpo", "data.path={pairs}"], ["+method=kto", "data.path={pairs}", "trainer.micro_batch_size=1"],
    ["+kernels=ft", "+method=dpo", "data.path={pairs}"], ["+kernels=liger", "+method=orpo", "data.path={pairs}"],
    ["+kernels=ft", "kernels.chunk_size=0"], ["+kernels=ft", "kernels.backend=cuda"], ["+kernels=cce", "kernels.filter_eps=tiny"],
    ["+kernels=liger", "kernels.swiglu=maybe"], ["+kernels=ft", "kernels.label_smoothing=1"],
    ["+method=dpo", "data.path={pairs}", "method.loss_type=exo_pair"],
    ["+method=orpo", "data.path={pairs}", "method.max_prompt_length=600"], ["data=preference", "data.path={pairs}"],
    ["data.path={chat}"], ["+adapter=qlora", "adapter.init=pissa"], ["+adapter=lora", "adapter.init=orthogonal", "adapter.r=3"],
    ["+adapter=lora", "adapter.target_modules=q_proj"], ["+adapter=lora", "adapter.target_modules=[]"],
    ["+adapter=lora", "model.name_or_path={tiny}", "adapter.target_modules=[q_proj,v_prj]"],
    ["+packing=multipack", "packing.attention=per_row", "model.attn_implementation=eager"],
    ["data=chat", "data.path={chat}", "data.format=template"], ["data=chat", "data.path={chat}", "data.chat_template=nonsense"],
    ["trainer.report_to=[comet_ml]"], ["trainer.report_to=[wandbb]"], ["model.attn_implementation=flashy"],
    # malformed override syntax
    ["optim.lr"], ["=1"], ["optim.lr==1"], ["trainer.report_to=[a"], ["+=x"], ["model.name_or_path='unterminated"],
    ["optim.lr=${oops"], ["trainer.report_to=[tensorboard"], ["a..b=1"], ["optim.lr=1e-4", "optim.lr=1e-3", "-x"],
    ["--nope"], ["optim.lr=[1,2]"], ["trainer.micro_batch_size={a: 1}"], ["data=chat", "data.path={chat}", "data.datasets=x"],
    ["+data.datasets=[{format: alpaca}]"], ["data=chat", "data.path={chat}", "+data.datasets=[{path: /no/such.jsonl}]"],
    ["trainer.max_steps=1.5"], ["model.dtype=float64"], ["trainer.num_epochs=-1"], ["optim.warmup_steps=-5"],
]

VALID: list[list[str]] = [
    [], ["optim.lr=1e-4"], ["trainer.max_steps=5"], ["experiment=null"], ["+adapter=lora"], ["+adapter=lora", "adapter.r=8"],
    ["+adapter=qlora"], ["+packing=multipack"], ["+method=dpo", "data.path={pairs}"], ["+method=ipo", "data.path={pairs}"],
    ["+method=kto", "data.path={pairs}"], ["+method=orpo", "data.path={pairs}"], ["+method=simpo", "data.path={pairs}"],
    ["data=chat", "data.path={chat}"], ["data=chat", "data.path={chat}", "+packing=multipack"],
    ["optim.scheduler=linear"], ["trainer.precision=bf16"], ["model.dtype=bfloat16"], ["data.sequence_len=256"],
    ["trainer.report_to=[]"], ["trainer.save_every_minutes=null"], ["trainer.save_steps=10"],
    ["+adapter=lora", "+method=dpo", "data.path={pairs}"], ["model.name_or_path={tiny}", "data=chat", "data.path={chat}"],
    ["optim.warmup_steps=0.1"], ["data=chat", "data.path={chat}", "data.val_size=0.2"],
]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model_dir) -> dict[str, str]:
    root = tmp_path_factory.mktemp("fuzz")
    pairs = root / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"{i}+1?", "chosen": str(i + 1), "rejected": str(i)}) + "\n"
                             for i in range(10)))
    (root / "empty").mkdir()
    (root / "config_only").mkdir()
    (root / "config_only" / "config.json").write_text("{}")
    return {"pairs": str(pairs), "chat": str(write_chat_rows(root / "chat.jsonl", n=6)), "empty": str(root / "empty"),
            "config_only": str(root / "config_only"), "tiny": str(tiny_model_dir)}


def _fill(overrides: list[str], files: dict[str, str]) -> list[str]:
    return [o.replace("{pairs}", files["pairs"]).replace("{chat}", files["chat"]).replace("{empty}", files["empty"])
            .replace("{config_only}", files["config_only"]).replace("{tiny}", files["tiny"]) for o in overrides]


def test_the_fuzz_has_at_least_200_bad_and_20_good_configs():
    assert len(generated_cases()) + len(HANDWRITTEN) >= 200
    assert len(VALID) >= 20


@pytest.mark.slow  # hundreds of configs through the real CLI: the full tier
def test_every_bad_config_is_one_clear_line_and_exit_2(files, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    failures = []
    for case in generated_cases() + HANDWRITTEN:
        overrides = _fill(case, files)
        try:
            code = main(["validate", *overrides])
        except BaseException as exc:  # noqa: BLE001 - a traceback is exactly what must not happen
            failures.append(f"{case}: raised {type(exc).__name__}: {exc}")
            continue
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        if code != 2 or not lines or not lines[-1].startswith("ft: error: ") or len(lines) > 3 or "Traceback" in err:
            failures.append(f"{case}: exit {code}, stderr {err.strip()[:300]!r}, stdout {out.strip()[:100]!r}")
    assert not failures, f"{len(failures)} bad configs not refused cleanly:\n" + "\n".join(failures[:30])


def test_every_good_config_passes(files, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    failures = []
    for case in VALID:
        code = main(["validate", *_fill(case, files)])
        out, err = capsys.readouterr()
        if code != 0 or not out.startswith("config OK"):
            failures.append(f"{case}: exit {code}: {err.strip()[:300]}")
    assert not failures, "\n".join(failures)


def test_a_row_far_longer_than_sequence_len_is_dropped_without_tokenizing(tmp_path):
    """A 50 MB row is dropped by its character count: the tokenizer never sees it."""
    from ft_data.api import BUILTIN_FORMATS, prepare_data

    class CountingTokenizer:
        """Fails the test if asked to tokenize the huge row."""

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __len__(self):
            return len(self.inner)

        def __call__(self, text, *args, **kwargs):
            assert len(text) < 1_000_000, "the over-long row was tokenized"
            return self.inner(text, *args, **kwargs)

    from ft_testing import build_tokenizer

    tokenizer = CountingTokenizer(build_tokenizer(tmp_path / "tok"))
    rows = [{"instruction": "Say hi.", "output": "Hi."}, {"instruction": "x" * 50_000_000, "output": "y"}]
    prepared = prepare_data({"format": "alpaca", "sequence_len": 256, "too_long": "drop", "cache": False},
                            tokenizer, dict(BUILTIN_FORMATS), rows=rows, source="fuzz")
    assert prepared.stats["train"]["dropped_too_long"] == 1 and len(prepared.train) == 1
