"""ft-diffusion on a tiny model: bidirectional and isolated attention, the schedule, the loss formula, the
sampler's steps, ft generate, and learning a task that needs right-hand context."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from ft.cli import main
from ft_testing import run_ft, run_lifecycle, write_chat_rows


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from ft_diffusion.attention import make_bidirectional

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    make_bidirectional(model)
    return model


def logits_of(model, ids, attention=None, positions=None, causal=False):
    import torch

    from ft_diffusion.attention import forward

    with torch.no_grad():
        return forward(model, torch.tensor(ids), None if attention is None else torch.tensor(attention),
                       None if positions is None else torch.tensor(positions), causal)


# -- attention ---------------------------------------------------------------------------------------


def test_attention_is_bidirectional_ignores_padding_and_isolates_packed_rows(tiny):
    import torch

    row = [[5, 17, 23, 42, 8, 99, 13, 61]]
    changed = [[5, 17, 23, 42, 8, 99, 13, 77]]  # only the last token differs
    base, later = logits_of(tiny, row), logits_of(tiny, changed)
    assert not torch.allclose(base[0, 2], later[0, 2]), "position 2 does not see a token after it"
    # the causal ablation does not
    torch.testing.assert_close(logits_of(tiny, row, causal=True)[0, :7], logits_of(tiny, changed, causal=True)[0, :7])
    # padding: whatever the padded positions hold, the real positions' logits are the same
    padded_a = logits_of(tiny, [[5, 17, 23, 42, 0, 0]], [[1, 1, 1, 1, 0, 0]])
    padded_b = logits_of(tiny, [[5, 17, 23, 42, 301, 7]], [[1, 1, 1, 1, 0, 0]])
    torch.testing.assert_close(padded_a[0, :4], padded_b[0, :4])
    torch.testing.assert_close(padded_a[0, :4], logits_of(tiny, [[5, 17, 23, 42]])[0], atol=1e-5, rtol=1e-5)
    # a packed row (position ids restarting at 0): each sequence sees only itself
    first, second = [5, 17, 23, 42], [8, 99, 13]
    packed = logits_of(tiny, [first + second], positions=[[0, 1, 2, 3, 0, 1, 2]])
    torch.testing.assert_close(packed[0, :4], logits_of(tiny, [first])[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[0, 4:], logits_of(tiny, [second])[0], atol=1e-5, rtol=1e-5)


# -- noise and loss ----------------------------------------------------------------------------------


def test_the_empirical_mask_ratio_follows_the_schedule_and_prompts_are_never_masked():
    import torch

    from ft_diffusion.noise import noise_batch

    ids = torch.randint(10, 500, (4000, 32))
    labels = ids.clone()
    labels[:, :8] = -100  # an SFT prompt
    generator = torch.Generator().manual_seed(0)
    noised = noise_batch(ids, labels, 3, 1e-3, "linear", 0.0, 1.0, generator=generator)
    ratio = noised.masked[:, 8:].float().mean().item()
    assert abs(ratio - 0.5) < 0.02, ratio
    assert not noised.masked[:, :8].any() and (noised.input_ids[noised.masked] == 3).all()
    assert torch.equal(noised.input_ids[~noised.masked], ids[~noised.masked])
    cosine = noise_batch(ids, labels, 3, 0.0, "cosine", 0.0, 1.0, generator=generator).masked[:, 8:].float().mean()
    assert abs(cosine.item() - (1 - 2 / math.pi)) < 0.02  # E[1 - cos(pi t / 2)] for t ~ U(0, 1)
    clamped = noise_batch(ids, labels, 3, 0.0, "linear", 0.3, 0.4, generator=generator)
    assert clamped.p.min().item() == pytest.approx(0.3) and clamped.p.max().item() == pytest.approx(0.4)


def reference_loss(logits, targets, masked, noisable, p, shift, weighting, normalization):
    """The formula written out position by position."""
    batch, length = len(logits), len(logits[0])
    sums, counts = [], []
    for b in range(batch):
        total = 0.0
        for i in range(length):
            source = i - 1 if shift else i
            if not masked[b][i] or source < 0:
                continue
            row = logits[b][source]
            log_z = math.log(sum(math.exp(v) for v in row))
            ce = log_z - row[targets[b][i]]
            total += ce / (p[b][i] if weighting else 1.0)
        sums.append(total)
        counts.append(sum(noisable[b]))
    if normalization == "answer_length":
        kept = [s / c for s, c in zip(sums, counts) if c]
        return sum(kept) / len(kept)
    return sum(sums) / max(sum(counts), 1)


@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("normalization", ["noisable_tokens", "answer_length"])
@pytest.mark.parametrize("weighting", [True, False])
def test_the_loss_equals_the_formula_on_fixed_tensors(shift, normalization, weighting):
    import torch

    from ft_diffusion.noise import Noised, diffusion_loss

    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 6, 11, generator=generator)
    targets = torch.randint(0, 11, (3, 6), generator=generator)
    noisable = torch.tensor([[0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    masked = noisable & torch.tensor([[1, 1, 0, 1, 0, 1], [1, 0, 1, 1, 0, 1], [1, 0, 1, 0, 1, 1]], dtype=torch.bool)
    p = torch.tensor([0.7, 0.25, 0.5])[:, None].expand(3, 6)
    noised = Noised(targets, masked, noisable, p)
    loss, stats = diffusion_loss(logits, targets, noised, shift, weighting, normalization)
    expected = reference_loss(logits.tolist(), targets.tolist(), masked.tolist(), noisable.tolist(), p.tolist(),
                              shift, weighting, normalization)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert int(stats["masked"]) == int(masked.sum()) - (int(masked[:, 0].sum()) if shift else 0)


def every_column(model):
    """The same model behind a forward without ``logits_to_keep``: the head runs on every column."""
    import torch

    class EveryColumn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, input_ids, attention_mask, position_ids=None):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)

    return EveryColumn().train(model.training)


@pytest.mark.parametrize("shift", [True, False])
def test_the_head_on_answer_columns_only_gives_the_loss_and_answers_of_every_column(tiny, shift):
    """Training and sampling compute the vocabulary head on the answer's columns only (SFT keeps the
    prompt clean); that is a speed-up, never a change: same loss, same committed tokens."""
    import torch

    from ft_diffusion.sampler import SamplerOptions, generate
    from ft_diffusion.trainer import Settings, diffusion_step, first_trained_column

    ids = torch.tensor([[5, 17, 23, 42, 8, 99, 13, 61, 0], [7, 19, 31, 44, 9, 98, 11, 0, 0]])
    labels = torch.full_like(ids, -100)
    labels[0, 4:8], labels[1, 5:7] = ids[0, 4:8], ids[1, 5:7]
    batch = {"input_ids": ids, "labels": labels, "attention_mask": (ids != 0).long()}
    assert first_trained_column(labels, shift) == (3 if shift else 4)
    settings = Settings(3, 1e-3, "linear", 0.0, 1.0, shift, True, "noisable_tokens", False, 2)
    with torch.no_grad():
        kept, kept_logits, kept_stats = diffusion_step(tiny, batch, settings, torch.Generator().manual_seed(1))
        every, every_logits, every_stats = diffusion_step(every_column(tiny), batch, settings,
                                                          torch.Generator().manual_seed(1))
    assert kept_logits.shape[1] == ids.shape[1] - first_trained_column(labels, shift)
    torch.testing.assert_close(kept, every, atol=1e-6, rtol=1e-6)
    assert {k: int(v) for k, v in kept_stats.items()} == {k: int(v) for k, v in every_stats.items()}
    options = SamplerOptions(gen_length=6, steps=3, block_length=6, temperature=0.7, shift_logits=shift, seed=4)
    prompts = [[5, 17, 23], [8, 99]]
    assert generate(tiny, prompts, 3, options, 0) == generate(every_column(tiny), prompts, 3, options, 0)


# -- generation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("gen_length,steps,block", [(12, 4, 12), (12, 6, 4), (10, 3, 10)])
def test_generation_commits_the_documented_tokens_per_step_and_leaves_no_mask(tiny, gen_length, steps, block):
    from ft_diffusion.sampler import SamplerOptions, Trace, commits_per_step, generate

    trace = Trace()
    out = generate(tiny, [[5, 17, 23], [8, 99]], mask_id=3, pad_id=0, trace=trace,
                   options=SamplerOptions(gen_length=gen_length, steps=steps, block_length=block, shift_logits=False))
    blocks = -(-gen_length // block)
    expected = []
    for b in range(blocks):
        size = min(block, gen_length - b * block)
        expected += commits_per_step(size, steps // blocks)
    assert trace.committed == expected and sum(expected) == gen_length
    assert trace.masks_left[-1] == 0 and all(3 not in row for row in out) and all(len(row) == gen_length for row in out)
    assert commits_per_step(10, 3) == [4, 3, 3]


def test_ft_generate_and_the_default_task_use_the_diffusion_sampler(tiny_model_dir, tmp_path):
    data = write_chat_rows(tmp_path / "chat.jsonl", n=24)
    args = ["run", "+method=diffusion", f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={data}",
            "data.val_size=4", "trainer.max_steps=2", "method.sample_every=1", "method.sample_prompts=2",
            f"run.root={tmp_path}", "run.name=d"]
    assert main(args) == 0
    run = tmp_path / "d"
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [1, 1, 2, 2] and "<|mdm_mask|>" not in samples[0]["answer"]
    summary = json.loads((run / "summary.json").read_text())
    assert 0.0 <= summary["masked_accuracy_before"] <= 1.0 and 0.0 <= summary["masked_accuracy_after"] <= 1.0
    from transformers import AutoTokenizer

    assert "<|mdm_mask|>" in AutoTokenizer.from_pretrained(run / "model").get_vocab()
    generated = run_ft(["generate", str(run), "--prompt", "Name a colour.", "--max-new-tokens", "8"])
    assert generated.returncode == 0, generated.stderr
    assert "(sampler of method=diffusion)" in generated.stderr and "<|mdm_mask|>" not in generated.stdout


def test_the_mask_token_is_never_padding_or_end_of_sequence(tiny_model_dir, tmp_path, capsys):
    data = write_chat_rows(tmp_path / "chat.jsonl", n=48)
    code = main(["run", "+method=diffusion", f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={data}",
                 "method.mask_token='<|im_end|>'", "trainer.max_steps=1", f"run.root={tmp_path}"])
    assert code == 2 and "is the tokenizer's end-of-sequence token" in capsys.readouterr().err
    assert main(["validate", "+method=diffusion", "method.mask_token=<|x|>"]) == 2
    assert "quote a value that holds special characters" in capsys.readouterr().err
    assert main(["validate", "+method=diffusion", "method.min_mask_ratio=0.6", "method.max_mask_ratio=0.4"]) == 2
    assert main(["validate", "+method=diffusion", "+kernels=ft"]) == 2


# -- learning ----------------------------------------------------------------------------------------


def copies_task(path: Path, n: int, seed: int) -> Path:
    """Chat rows whose trained answer comes *first* and is repeated, untrained, by the turn after it: 8 random
    letters. Every masked letter of the answer is written out to its right, which a model that attends both
    ways can read and a left-to-right model cannot: it can only guess (one letter in ten)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        letters = " ".join(rng.choice("abcdefghij") for _ in range(8))
        rows.append({"messages": [{"role": "assistant", "content": letters}, {"role": "user", "content": letters}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def held_out_accuracy(tiny_model_dir, tmp_path, attention: str) -> float:
    train = copies_task(tmp_path / "train.jsonl", 1024, seed=1)
    metrics = run_lifecycle(["+method=diffusion", f"model.name_or_path={tiny_model_dir}", "data=chat",
                             f"data.path={train}", "data.val_size=64", f"method.attention={attention}",
                             "method.shift_logits=false", "method.sample_every=0", "trainer.max_steps=1200",
                             "trainer.micro_batch_size=16", "optim.lr=3e-3", "optim.warmup_steps=0",
                             "trainer.logging_steps=200", "run.save_final_model=false", "run.plot=false"],
                            tmp_path / attention)
    return metrics["masked_accuracy_after"]


@pytest.mark.slow
def test_bidirectional_attention_learns_what_needs_right_hand_context_and_causal_does_not(tiny_model_dir, tmp_path):
    """The same tiny model and training, held-out masked-token accuracy at mask ratio 0.5 (about 30 s each)."""
    bidirectional = held_out_accuracy(tiny_model_dir, tmp_path, "bidirectional")
    causal = held_out_accuracy(tiny_model_dir, tmp_path, "causal")
    assert bidirectional > 0.6, bidirectional
    assert causal < bidirectional - 0.2, (causal, bidirectional)
