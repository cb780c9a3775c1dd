"""A packed row trains exactly as it would alone: same loss terms, same gradients (fp32, 1e-5)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ft_multipack.attention import PER_ROW, use_attention
from ft_multipack.collator import PackedCollator
from ft_multipack.plugin import candidate_modes, isolation_gap

IGNORE = -100


def tiny_llama(implementation: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False, attn_implementation=implementation)
    model = LlamaForCausalLM(config)
    return model.float().eval()


def sample_rows() -> list[tuple[list[int], list[int]]]:
    """Rows of different lengths; some tokens untrained (-100) as a prompt would be."""
    generator = torch.Generator().manual_seed(1)
    rows = []
    for length, prompt in ((7, 3), (19, 5), (4, 0), (26, 11), (12, 12 - 1)):
        ids = torch.randint(3, 97, (length,), generator=generator).tolist()
        labels = [IGNORE] * prompt + ids[prompt:]
        rows.append((ids, labels))
    return rows


def row_loss_terms(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed token losses, trained-token count) of a causal LM on one sequence."""
    shift_logits, shift_labels = logits[:-1], labels[1:]
    losses = torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE, reduction="none")
    return losses.sum(), (shift_labels != IGNORE).sum()


def alone(model, ids: list[int], labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(input_ids=torch.tensor([ids])).logits[0]
    return row_loss_terms(logits, torch.tensor(labels))


def grads(model, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(model.parameters()), retain_graph=True, allow_unused=False))


@pytest.mark.parametrize(("implementation", "attention"), [
    ("sdpa", "position_ids"), ("sdpa", "block_mask"), ("sdpa", "per_row"),
    ("eager", "position_ids"), ("eager", "block_mask"),
])
def test_packed_rows_have_the_loss_and_gradients_they_have_alone(implementation, attention):
    model = tiny_llama(implementation)
    rows = sample_rows()
    if attention == "per_row":
        use_attention(model, PER_ROW)
    collator = PackedCollator(pad_token_id=0, attention="block_mask" if attention == "block_mask" else "position_ids",
                              attn_implementation=implementation, mask_dtype=torch.float32, pad_to_multiple_of=8)
    # two packs in one batch, so padding and the batch dimension are exercised too
    packs = [rows[:3], rows[3:]]
    batch = collator([{"input_ids": [r[0] for r in pack], "labels": [r[1] for r in pack]} for pack in packs])
    assert batch["input_ids"].shape[1] % 8 == 0
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    logits = model(**inputs).logits

    checked = 0
    for pack_index, pack in enumerate(packs):
        start = 0
        for ids, labels in pack:
            end = start + len(ids)
            packed_sum, packed_count = row_loss_terms(logits[pack_index, start:end], batch["labels"][pack_index, start:end])
            # the pack's own labels for this row: the first label masked, the rest kept
            assert batch["labels"][pack_index, start].item() == IGNORE
            assert batch["labels"][pack_index, start + 1:end].tolist() == labels[1:]
            assert batch["position_ids"][pack_index, start:end].tolist() == list(range(len(ids)))
            lone_sum, lone_count = alone(model, ids, labels)
            assert packed_count == lone_count
            if lone_count == 0:
                start = end
                continue
            torch.testing.assert_close(packed_sum / packed_count, lone_sum / lone_count, rtol=0, atol=1e-5)
            for packed_grad, lone_grad in zip(grads(model, packed_sum / packed_count), grads(model, lone_sum / lone_count)):
                torch.testing.assert_close(packed_grad, lone_grad, rtol=0, atol=1e-5)
            checked += 1
            start = end
    assert checked == len(rows)


class ConcatenatingCollator:
    """What naive packing does: rows end to end, positions running on, one causal mask over all."""

    def __call__(self, features):
        ids = [token for feature in features for row in feature["input_ids"] for token in row]
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([ids])}


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_the_start_up_check_tells_isolated_rows_from_leaking_ones(implementation):
    """The check the plugin runs on the real model at start: ~0 for packed rows, large when rows leak."""
    model = tiny_llama(implementation)
    isolated = PackedCollator(pad_token_id=0, attention="position_ids", attn_implementation=implementation)
    assert isolation_gap(model, isolated, 97) < 1e-5
    assert isolation_gap(model, ConcatenatingCollator(), 97) > 1e-2
    assert not model.training  # put back in the mode it was in
    model.train()
    isolation_gap(model, isolated, 97)
    assert model.training


def test_a_block_mask_is_refused_for_attention_it_cannot_drive():
    with pytest.raises(ValueError, match="sdpa and eager"):
        PackedCollator(pad_token_id=0, attention="block_mask", attn_implementation="flash_attention_2")


def test_per_row_attention_outside_packed_batches_is_plain_sdpa():
    """Generation (KV cache, left padding) and padded batches go to transformers' sdpa unchanged."""
    from transformers import GenerationConfig

    reference, per_row = tiny_llama("sdpa"), tiny_llama("sdpa")
    use_attention(per_row, PER_ROW)
    assert per_row.config._attn_implementation == PER_ROW
    ids = torch.tensor([[0, 0, 5, 9, 11, 40], [7, 3, 8, 2, 61, 13]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    settings = GenerationConfig(max_new_tokens=6, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        assert torch.equal(per_row.generate(input_ids=ids, attention_mask=mask, generation_config=settings),
                           reference.generate(input_ids=ids, attention_mask=mask, generation_config=settings))
        torch.testing.assert_close(per_row(input_ids=ids, attention_mask=mask).logits,
                                   reference(input_ids=ids, attention_mask=mask).logits, rtol=0, atol=1e-6)
    use_attention(per_row, "sdpa")
    assert per_row.config._attn_implementation == "sdpa"


def test_auto_tries_the_fastest_isolating_mode_first():
    assert candidate_modes("auto", "sdpa", on_cpu=True) == ["per_row", "position_ids", "block_mask"]
    assert candidate_modes("auto", "sdpa", on_cpu=False) == ["position_ids", "block_mask"]
    assert candidate_modes("auto", "eager") == ["position_ids", "block_mask"]
    assert candidate_modes("auto", "flash_attention_2", on_cpu=False) == ["position_ids"]
    assert candidate_modes("block_mask", "sdpa") == ["block_mask"]
