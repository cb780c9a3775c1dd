"""ft-kd end to end on tiny models: online and offline agree, distillation pulls the student to the teacher,
composes with multipack, and bad setups fail in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from ft import hookimpl
from ft.cli import main
from ft_testing import TEST_DATA, build_tiny_model, run_lifecycle, write_chat_rows


def gsm8k_chats(path: Path, start: int, n: int) -> Path:
    """Chat rows from real GSM8K questions and answers (a fallback of repeated pairs without the data)."""
    source = TEST_DATA / "gsm8k" / "train.jsonl"
    if not source.is_file():
        return write_chat_rows(path, n=n)
    rows = []
    with source.open() as handle:
        for index, line in enumerate(handle):
            if index < start:
                continue
            if len(rows) == n:
                break
            row = json.loads(line)
            rows.append({"messages": [{"role": "user", "content": row["question"][:200]},
                                      {"role": "assistant", "content": row["answer"].split("####")[-1].strip()}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    """A teacher (the tiny model fine-tuned on the rows) and a 1-layer student cut from it."""
    root = tmp_path_factory.mktemp("kd")
    train = gsm8k_chats(root / "train.jsonl", 0, 96)
    heldout = gsm8k_chats(root / "heldout.jsonl", 1400, 24)
    run_lifecycle([f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={train}", "trainer.max_steps=60",
                   "trainer.micro_batch_size=8", "optim.lr=3e-3", "run.plot=false"], root / "teacher-run")
    teacher = root / "teacher-run" / "model"
    assert main(["kd", "make-student", str(teacher), "--layers", "1", "--out", str(root / "student")]) == 0
    return {"root": root, "train": train, "heldout": heldout, "teacher": teacher, "student": root / "student"}


def common(world: dict[str, Path], name: str, *extra: str) -> list[str]:
    return [f"model.name_or_path={world['student']}", "data=chat", f"data.path={world['train']}",
            f"data.val_path={world['heldout']}", "trainer.max_steps=12", "trainer.micro_batch_size=8",
            "trainer.logging_steps=4", "optim.lr=3e-3", "run.plot=false", "run.save_final_model=true", *extra]


def heldout_ce_and_kl(student_dir: Path, teacher_dir: Path, heldout: Path) -> tuple[float, float]:
    """Mean CE on the held-out answers and mean KL(teacher || student) per trained token."""
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    student = AutoModelForCausalLM.from_pretrained(student_dir).eval()
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()
    ce = kl = count = 0.0
    with torch.no_grad():
        for line in heldout.read_text().splitlines():
            messages = json.loads(line)["messages"]
            prompt = tokenizer.apply_chat_template(messages[:1], add_generation_prompt=True, return_dict=True)["input_ids"]
            full = tokenizer.apply_chat_template(messages, return_dict=True)["input_ids"]
            ids = torch.tensor([full])
            s_logp = F.log_softmax(student(ids).logits[0, :-1].float(), -1)[len(prompt) - 1:]
            t_logp = F.log_softmax(teacher(ids).logits[0, :-1].float(), -1)[len(prompt) - 1:]
            targets = ids[0, len(prompt):]
            ce += float(-s_logp.gather(-1, targets[:, None]).sum())
            kl += float((t_logp.exp() * (t_logp - s_logp)).sum())
            count += len(targets)
    return ce / count, kl / count


class Parts:
    @hookimpl(trylast=True)
    def post_train(self, ctx: Any, metrics: dict[str, Any]) -> None:
        self.metrics = dict(metrics)
        self.history = list(ctx.trainer.state.log_history)


@pytest.mark.slow
def test_distillation_beats_ce_only_on_held_out_kl_and_ce(world):
    kd_watch, ce_watch = Parts(), Parts()
    run_lifecycle(common(world, "kd", "+method=kd", f"method.teacher={world['teacher']}"), world["root"] / "kd", kd_watch)
    run_lifecycle(common(world, "ce"), world["root"] / "ce", ce_watch)
    kd_ce, kd_kl = heldout_ce_and_kl(world["root"] / "kd" / "model", world["teacher"], world["heldout"])
    ce_ce, ce_kl = heldout_ce_and_kl(world["root"] / "ce" / "model", world["teacher"], world["heldout"])
    assert kd_kl <= 0.9 * ce_kl, (kd_kl, ce_kl)  # at least 10% closer to the teacher
    assert kd_ce < ce_ce, (kd_ce, ce_ce)
    assert kd_watch.metrics["heldout_kl_after"] < kd_watch.metrics["heldout_kl_before"]
    logged = [h for h in kd_watch.history if "loss/kd" in h]
    assert logged and all(h["loss"] == pytest.approx(h["loss/ce"] + h["loss/kd"], rel=1e-3) for h in logged)


def test_logged_parts_add_up_to_the_logged_loss_under_gradient_accumulation(world):
    """With 2 micro-batches a step, loss/ce + loss/kd is the step's loss (they are reduced like it: summed over
    the step's micro-batches, averaged over the steps between logs), not half of it."""
    watch = Parts()
    run_lifecycle([f"model.name_or_path={world['student']}", "data=chat", f"data.path={world['train']}",
                   "trainer.max_steps=4", "trainer.micro_batch_size=4", "trainer.gradient_accumulation_steps=2",
                   "trainer.logging_steps=2", "optim.lr=3e-3", "run.plot=false", "run.save_final_model=false",
                   "+method=kd", f"method.teacher={world['teacher']}"], world["root"] / "accumulated", watch)
    logged = [h for h in watch.history if "loss/kd" in h]
    assert len(logged) == 3  # steps 1 (first step), 2 and 4
    for entry in logged:
        assert entry["loss"] == pytest.approx(entry["loss/ce"] + entry["loss/kd"], rel=1e-4), entry


@pytest.mark.slow
def test_offline_dump_trains_like_the_online_teacher_when_k_is_the_vocabulary(world):
    vocab = json.loads((world["teacher"] / "config.json").read_text())["vocab_size"]
    dump = world["root"] / "dump-all"
    data = [f"model.name_or_path={world['student']}", "data=chat", f"data.path={world['train']}",
            f"data.val_path={world['heldout']}"]
    assert main(["kd", "dump", "--teacher", str(world["teacher"]), "--out", str(dump), "--top-k", str(vocab), *data]) == 0
    online, offline = Parts(), Parts()
    base = common(world, "x", "+method=kd", "trainer.max_steps=3", "trainer.logging_steps=1", "run.save_final_model=false")
    run_lifecycle([*base, f"method.teacher={world['teacher']}"], world["root"] / "online", online)
    run_lifecycle([*base, f"method.logprobs={dump}"], world["root"] / "offline", offline)
    on = [h["loss"] for h in online.history if "loss" in h]
    off = [h["loss"] for h in offline.history if "loss" in h]
    assert len(on) == 3 and on == pytest.approx(off, rel=1e-4)
    assert offline.metrics["heldout_kl_before"] == pytest.approx(online.metrics["heldout_kl_before"], rel=1e-4)


@pytest.mark.slow
def test_offline_targets_follow_rows_into_multipack_packs(world):
    dump = world["root"] / "dump-8"
    data = [f"model.name_or_path={world['student']}", "data=chat", f"data.path={world['train']}",
            f"data.val_path={world['heldout']}"]
    assert main(["kd", "dump", "--teacher", str(world["teacher"]), "--out", str(dump), "--top-k", "8", *data]) == 0
    watch = Parts()
    run_lifecycle(common(world, "p", "+method=kd", f"method.logprobs={dump}", "+packing=multipack",
                         "data.sequence_len=256", "trainer.micro_batch_size=1", "trainer.max_steps=4",
                         "trainer.logging_steps=1", "run.save_final_model=false"), world["root"] / "packed", watch)
    logged = [h for h in watch.history if "loss/kd" in h]
    assert len(logged) == 4 and all(math.isfinite(h["loss/kd"]) and h["loss/kd"] > 0 for h in logged)


def test_bad_kd_setups_fail_in_one_line(tmp_path, tiny_model_dir, capsys):
    other = build_tiny_model(tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    config["vocab_size"] += 5
    (other / "config.json").write_text(json.dumps(config))
    rows = write_chat_rows(tmp_path / "chat.jsonl", n=8)
    base = [f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}", "+method=kd"]
    cases = [
        (["method.teacher=null"], "method=kd needs a teacher"),
        (["method.teacher=/no/such/teacher"], "method.teacher='/no/such/teacher': no such folder"),
        ([f"method.teacher={other}"], "teacher and student must share the tokenizer"),
        (["method.logprobs=/no/such/dump"], "method.logprobs='/no/such/dump': no such file or folder"),
        ([f"method.teacher={tiny_model_dir}", "method.temperature=0"], "method.temperature=0 is not valid"),
        ([f"method.teacher={tiny_model_dir}", "method.loss=kl"], "method.loss='kl' is not valid"),
    ]
    capsys.readouterr()  # building the other model printed progress
    for extra, expected in cases:
        assert main(["validate", *base, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], (extra, err)
    vocab = json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]
    assert main(["kd", "dump", "--teacher", str(tiny_model_dir), "--out", str(tmp_path / "d"), "--top-k",
                 str(vocab + 1), *base[:3]]) == 2
    assert f"larger than the teacher's vocabulary ({vocab} tokens)" in capsys.readouterr().err


def test_make_student_keeps_the_tokenizer_and_loads_in_plain_transformers(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert main(["kd", "make-student", str(tiny_model_dir), "--layers", "1", "--out", str(tmp_path / "s")]) == 0
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "s")
    assert student.config.num_hidden_layers == 1
    assert AutoTokenizer.from_pretrained(tmp_path / "s").get_vocab() == AutoTokenizer.from_pretrained(tiny_model_dir).get_vocab()
    out = student(torch.tensor([[1, 2, 3]])).logits
    assert out.shape[-1] == student.config.vocab_size


@pytest.mark.slow
def test_teacher_self_distils_the_loaded_model_into_a_cut_copy(world):
    """The embedded default's mode: one model load, its top-k kept, then it is cut and trained as the student."""
    watch = Parts()
    run_lifecycle([f"model.name_or_path={world['teacher']}", "data=chat", f"data.path={world['train']}",
                   f"data.val_path={world['heldout']}", "+method=kd", "method.student_layers=1", "method.top_k=16",
                   "trainer.max_steps=12", "trainer.micro_batch_size=8", "trainer.logging_steps=4", "optim.lr=3e-3",
                   "run.plot=false"], world["root"] / "self", watch)
    saved = json.loads((world["root"] / "self" / "model" / "config.json").read_text())
    assert saved["num_hidden_layers"] == 1  # the student is what was saved
    assert watch.metrics["heldout_kl_after"] < watch.metrics["heldout_kl_before"]
    assert watch.metrics["student_parameters"] < watch.metrics["teacher_parameters"]
    assert any("loss/kd" in h for h in watch.history)


def test_the_embedded_default_holds_rows_out_to_measure_the_kl_on_the_default_task_only(test_data):
    from ft.api import prepare_run

    embedded = prepare_run(["+method=kd"])
    assert embedded.cfg.data.val_size == 32 and embedded.composed.plugin_defaults == {"data.val_size": 32}
    own = prepare_run(["+method=kd", "data=chat", f"data.path={test_data / 'gsm8k' / 'train.jsonl'}",
                       "data.field_messages=messages"])
    assert own.cfg.data.val_size == 0.0 and own.composed.plugin_defaults == {}


class Trainable:
    @hookimpl(trylast=True)
    def post_train(self, ctx: Any, metrics: dict[str, Any]) -> None:
        self.trainable = sorted(n for n, p in ctx.model.named_parameters() if p.requires_grad)
        self.history = list(ctx.trainer.state.log_history)
        from ft_kd.plugin import KdState

        teacher = ctx.state(KdState).teacher
        self.teacher_layers = {type(m).__name__ for m in teacher.modules()} if teacher is not None else set()


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["lora", "4bit_teacher"])
def test_online_distillation_composes_with_lora_and_with_a_4bit_teacher(variant, world):
    extra = ["+adapter=lora"] if variant == "lora" else ["method.teacher_bits=4"]
    watch = Trainable()
    run_lifecycle(common(world, variant, "+method=kd", f"method.teacher={world['teacher']}", *extra,
                         "trainer.max_steps=2", "trainer.logging_steps=1", "run.save_final_model=false"),
                  world["root"] / variant, watch)
    logged = [h for h in watch.history if "loss/kd" in h]
    assert len(logged) == 2 and all(math.isfinite(h["loss/kd"]) and h["loss/kd"] > 0 for h in logged)
    if variant == "lora":
        assert watch.trainable and all("lora_" in name for name in watch.trainable)  # only the adapter trains
    else:
        assert "Linear4bit" in watch.teacher_layers  # the teacher really is quantised
