"""The preference report: before/after lines, and what a "before" accuracy of 0 means."""

from __future__ import annotations

from ft_preference.report import summarise


def test_a_zero_accuracy_before_training_is_reported_as_a_tie_with_the_reference():
    metrics = {"eval_rewards/accuracies": 0.75, "eval_rewards/margins": 0.03}
    before = {"eval_rewards/accuracies": 0.0, "eval_rewards/margins": 0.0}
    lines = summarise(metrics, before, [])
    assert lines[0] == ("  heldout reward accuracy: 0.0000 -> 0.7500 (0 before training is a tie, not a miss: the "
                        "policy starts as its reference, so every margin is 0; chance is 0.5)")
    assert lines[1] == "  heldout reward margin: 0.0000 -> 0.0300"
    assert metrics["heldout_reward_accuracy_before"] == 0.0 and metrics["heldout_reward_accuracy_after"] == 0.75


def test_a_method_without_a_reference_has_a_real_before_and_no_tie_note():
    metrics = {"eval_rewards/accuracies": 0.25, "eval_rewards/margins": -0.40}
    lines = summarise(metrics, {"eval_rewards/accuracies": 0.125, "eval_rewards/margins": -0.45}, [])
    assert lines[0] == "  heldout reward accuracy: 0.1250 -> 0.2500"
