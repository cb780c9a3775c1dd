"""Axolotl's own run-environment keys: logging, cloud, hub and debug settings that change nothing ft trains.

Keys that change what trains are never here: each belongs to the plugin that implements the feature.
"""

from __future__ import annotations

from typing import Any

_CLOUD = "no effect: Axolotl's cloud launcher setting (ft runs where it is started)"

ENVIRONMENT_KEYS: dict[str, Any] = {
    "strict": "no effect: Axolotl's check of unknown keys; ft checks every key",
    "debug": "no effect: Axolotl's debug printing (ft preprocess --show prints tokens and labels)",
    "local_rank": "no effect: set by the launcher",
    "hub_model_id": "no effect: ft does not push to the hub (the run folder holds the model)",
    "hub_strategy": "no effect: ft does not push to the hub",
    "push_dataset_to_hub": "no effect: ft does not push to the hub",
    "hf_use_auth_token": "no effect: the hub token comes from the environment (HF_TOKEN)",
    "secrets": _CLOUD, "gpu": _CLOUD, "gpu_count": _CLOUD, "provider": _CLOUD, "node_count": _CLOUD,
    "volumes": _CLOUD, "branch": _CLOUD, "dockerfile_commands": _CLOUD, "memory": _CLOUD, "timeout": _CLOUD,
    "memory_preprocess": _CLOUD, "timeout_preprocess": _CLOUD, "project_name": _CLOUD,
    "use_otel_metrics": "no effect: Axolotl's OpenTelemetry exporter", "otel_metrics_host": "no effect: Axolotl's OpenTelemetry exporter",
    "otel_metrics_port": "no effect: Axolotl's OpenTelemetry exporter",
    "test_value": "no effect: an Axolotl test switch",
}
