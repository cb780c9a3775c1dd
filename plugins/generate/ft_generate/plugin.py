"""Builtin plugin: ``ft generate RUN_DIR --prompt ...`` and ``ft chat RUN_DIR``, with a run's model.

Works for every kind of run folder, and for model folders given directly:

* a full fine-tune: ``RUN_DIR/model`` is a plain Hugging Face model;
* an adapter run (LoRA, QLoRA...): ``RUN_DIR/model`` holds a PEFT adapter, which the plugin that saved it
  loads with its base (the ``load_for_inference`` hook; ft-lora for PEFT adapters): the base is the run's
  ``model.name_or_path`` (from ``RUN_DIR/config.yaml``) or the adapter's ``base_model_name_or_path``,
  and the adapter is applied on top with PEFT. A base that trained quantised (QLoRA, recorded in
  ft-lora's ``ft_adapter.json``) is loaded quantised the same way: the adapter learned to correct *that* base;
* a merged model (``ft merge`` output) or a checkpoint folder: pass that folder.

Prompts go through the tokenizer's chat template (the one saved with the run's model); the reply
streams to the terminal token by token (``transformers.TextStreamer``) on stdout, everything else
goes to stderr, so ``ft generate ... > answer.txt`` captures the answer alone. Greedy decoding by
default, so the same prompt gives the same answer; ``--temperature`` > 0 samples.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ft.api import FtUserError, PluginInfo, hookimpl

FT_PLUGIN = PluginInfo(
    name="generate", contract="3.0",
    description="ft generate, ft chat, ft eval: generation and held-out scores with a run's (or any) model",
)

DTYPES = ("float32", "bfloat16", "float16")


class GenerateError(FtUserError):
    """The folder holds no model to generate with, or its base cannot be found."""


@dataclass
class LoadedForGeneration:
    """A model ready to generate, its tokenizer, one line saying what it is, and the sampler a method
    plugin provides for it (``text_sampler`` hook; ``None``: ``model.generate``)."""

    model: Any
    tokenizer: Any
    description: str
    sampler: Any = None


NO_MODEL = "no model found (expected an ft run folder with model/, or a folder with config.json or a PEFT adapter_config.json)"


def find_model_folder(path: Path) -> Path:
    """The model folder of a run folder (``model/``), or ``path`` itself if it holds a model or adapter, or any
    other folder (a plugin's own saved form, which ``load_for_inference`` may recognise)."""
    for candidate in (path, path / "model"):
        if (candidate / "config.json").is_file() or (candidate / "adapter_config.json").is_file():
            return candidate
    if (path / "config.yaml").is_file() and (path / "checkpoints").is_dir():
        raise GenerateError(
            f"{path}: the run has no final model (model/); pass one of its checkpoints instead, "
            f"e.g. {path}/checkpoints/checkpoint-N"
        )
    if path.is_dir() and not (path / "config.yaml").is_file():
        return path
    raise GenerateError(f"{path}: {NO_MODEL}")


def run_config_for(model_folder: Path) -> dict[str, Any]:
    """The resolved ``config.yaml`` of the run that produced ``model_folder`` (``model/`` or a checkpoint)."""
    import yaml

    for parent in (model_folder.parent, model_folder.parent.parent):
        config = parent / "config.yaml"
        if config.is_file() and (parent / "run.json").is_file():
            return yaml.safe_load(config.read_text()) or {}
    return {}


def load_for_generation(path: Path, base_arg: str | None = None, dtype: str | None = None,
                        full_precision_base: bool = False, p_flags: list[str] | None = None) -> LoadedForGeneration:
    """Load what ``path`` names (run folder, model folder, adapter folder) for generation.

    An adapter trained on a quantised base (QLoRA) is applied to the base quantised the same way, so the
    replies come from the model that was trained; ``full_precision_base`` loads the base unquantised.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = find_model_folder(path)
    run_cfg = run_config_for(folder)
    dtype = dtype or (run_cfg.get("model") or {}).get("dtype") or "float32"
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype) if dtype in DTYPES else "auto"}
    if torch.cuda.is_available():
        kwargs["device_map"] = {"": 0}
    plugin_loaded = installed_hooks(p_flags).load_for_inference(
        folder=folder, run_config=run_cfg,
        options={"base": base_arg, "load_kwargs": kwargs, "full_precision_base": full_precision_base})
    if plugin_loaded is not None:  # an adapter and its base (ft-lora), or another plugin's saved form
        model, tokenizer_source, description = plugin_loaded
    elif (folder / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
        description = f"model {folder}"
        tokenizer_source = folder
    elif (folder / "adapter_config.json").is_file():
        raise GenerateError(f"{folder} holds an adapter (adapter_config.json) and no installed plugin loads it for "
                            f"inference; install the plugin that trained it (for a LoRA adapter: ft-lora)")
    else:
        raise GenerateError(f"{folder}: {NO_MODEL}")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_source))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    sampler = run_sampler(run_cfg.get("method") or {}, model, tokenizer, p_flags)
    if sampler is not None:
        description += f" (sampler of method={(run_cfg.get('method') or {}).get('name')})"
    return LoadedForGeneration(model, tokenizer, description, sampler)


def installed_hooks(p_flags: list[str] | None = None) -> Any:
    """The hooks of every installed plugin (``load_for_inference``, ``text_sampler``), asked outside a run."""
    from ft.api import Session

    return Session(p_flags).pm_all.hook


def run_sampler(method_config: dict[str, Any], model: Any, tokenizer: Any, p_flags: list[str] | None = None) -> Any:
    """The sampler an installed plugin provides for this run's method (``text_sampler``), or ``None``."""
    return installed_hooks(p_flags).text_sampler(method_config=dict(method_config), model=model, tokenizer=tokenizer)


def generation_config(loaded: LoadedForGeneration, args: argparse.Namespace) -> Any:
    """The model's own generation config with the command's options on top (greedy unless sampling)."""
    import copy

    config = copy.deepcopy(loaded.model.generation_config)
    sampling = float(args.temperature) > 0
    config.do_sample = sampling
    config.max_new_tokens = int(args.max_new_tokens)
    config.temperature = float(args.temperature) if sampling else 1.0
    config.top_p = float(args.top_p) if sampling else 1.0
    config.top_k = int(args.top_k) if sampling else 50
    config.repetition_penalty = float(args.repetition_penalty)
    tokenizer = loaded.tokenizer
    eos = config.eos_token_id
    eos_ids = list(eos) if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
        eos_ids.append(tokenizer.eos_token_id)
    config.eos_token_id = eos_ids or None
    config.pad_token_id = tokenizer.pad_token_id
    return config


def prompt_inputs(tokenizer: Any, messages: list[dict[str, str]]) -> dict[str, Any]:
    """Token ids for the conversation so far, ending with the assistant's turn opening."""
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                             return_tensors="pt")
    text = "\n\n".join(m["content"] for m in messages) + "\n"
    return tokenizer(text, return_tensors="pt")


def reply(loaded: LoadedForGeneration, messages: list[dict[str, str]], args: argparse.Namespace,
          stream: bool = True) -> str:
    """Generate the assistant's next turn; stream it to stdout as it is produced and return it."""
    import torch
    from transformers import TextStreamer

    inputs = {k: v.to(loaded.model.device) for k, v in prompt_inputs(loaded.tokenizer, messages).items()}
    if args.seed is not None:
        torch.manual_seed(int(args.seed))
    if loaded.sampler is not None:  # the method's own way to generate (whole answer at once: no streaming)
        new = loaded.sampler([inputs["input_ids"][0].tolist()], int(args.max_new_tokens))[0]
        from ft_default_task.task import until_eos

        text = loaded.tokenizer.decode(until_eos(new, loaded.tokenizer), skip_special_tokens=True)
        print(text, flush=True)
        return text
    streamer = TextStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True) if stream else None
    with torch.no_grad():
        output = loaded.model.generate(**inputs, generation_config=generation_config(loaded, args), streamer=streamer)
    new_tokens = output[0, inputs["input_ids"].shape[1]:]
    text = loaded.tokenizer.decode(new_tokens, skip_special_tokens=True)
    if not stream:
        print(text, flush=True)
    return text


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="an ft run folder, or a model / adapter / merged / checkpoint folder")
    parser.add_argument("--system", help="a system message to start the conversation with")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest reply in tokens (default 256)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy; > 0 samples")
    parser.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling (with --temperature > 0)")
    parser.add_argument("--top-k", type=int, default=50, help="top-k sampling (with --temperature > 0)")
    parser.add_argument("--repetition-penalty", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None, help="seed for sampling")
    parser.add_argument("--base", help="for an adapter: the base model (default: the run's model)")
    parser.add_argument("--dtype", choices=DTYPES, default=None, help="weights dtype (default: the run's model.dtype)")
    parser.add_argument("--full-precision-base", action="store_true",
                        help="for an adapter trained on a 4-bit/8-bit base (QLoRA): load the base unquantised")
    parser.add_argument("--no-stream", action="store_true", help="print the reply once it is complete")


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--prompt", required=True, help="the user message (- reads it from stdin)")


def _load(args: argparse.Namespace) -> LoadedForGeneration:
    if args.max_new_tokens < 1:
        raise GenerateError(f"--max-new-tokens={args.max_new_tokens}: expected at least 1")
    loaded = load_for_generation(Path(args.run_dir).expanduser(), args.base, args.dtype, args.full_precision_base,
                                 list(getattr(args, "ft_p_flags", [])))
    print(f"[ft] {loaded.description}", file=sys.stderr)
    return loaded


def start_messages(args: argparse.Namespace) -> list[dict[str, str]]:
    return [{"role": "system", "content": args.system}] if args.system else []


def run_generate(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise GenerateError("--prompt is empty")
    loaded = _load(args)
    reply(loaded, [*start_messages(args), {"role": "user", "content": prompt}], args, stream=not args.no_stream)
    return 0


CHAT_HELP = "type a message and press Enter; /reset starts over, /exit (or Ctrl-D) quits"


def run_chat(args: argparse.Namespace) -> int:
    """A conversation on stdin/stdout. Ctrl-C stops the reply being written, not the chat."""
    loaded = _load(args)
    interactive = sys.stdin.isatty()
    print(f"[ft] chat: {CHAT_HELP}", file=sys.stderr)
    messages = start_messages(args)
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            messages = start_messages(args)
            print("[ft] conversation cleared", file=sys.stderr)
            continue
        messages.append({"role": "user", "content": text})
        if interactive:
            print("assistant> ", end="", flush=True)
        try:
            answer = reply(loaded, messages, args, stream=not args.no_stream)
        except KeyboardInterrupt:
            messages.pop()
            print("\n[ft] reply interrupted", file=sys.stderr)
            continue
        messages.append({"role": "assistant", "content": answer})
    return 0


@hookimpl
def cli_commands() -> list[Any]:
    from ft.api import Command
    from ft_generate.evaluate import eval_command

    return [
        Command("generate", "answer one prompt with a run's model (streams the reply)", run_generate,
                add_generate_arguments),
        Command("chat", "chat with a run's model in the terminal", run_chat, add_common_arguments),
        eval_command(),
    ]
