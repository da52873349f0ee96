"""Train a LoRA adapter with peft on supervised examples, on CPU or GPU.

The model sees exactly what a serving engine feeds it: its answer format's prompt around the normalized
query (``TrainingConfig.answer_format``), tokenized the same way; the loss is taken on the answer, written in
that format, and its end-of-sequence token only. The folder records the format (``answer_format.json``), so
engines prompt and read the adapter in the format it learnt. The adapter folder it
writes names the base by its folder name, as ``validate_adapter`` expects, and loads through the same
path a user's adapter does.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from serve_app.models.task import DEFAULT_FORMAT, FORMATS, AnswerFormat, mark_format
from serve_app.training.examples import Example

#: Every projection of a Llama/Qwen2 block: what vLLM and peft both support for these architectures.
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainingConfig:
    rank: int = 8
    steps: int = 60
    batch_size: int = 8
    learning_rate: float = 2e-3
    warmup_steps: int = 5
    device: str = "cpu"
    dtype: str = "float32"  # bfloat16 on a GPU
    seed: int = 0
    answer_format: int = DEFAULT_FORMAT.version  # a version of ``serve_app.models.task.FORMATS``


@dataclass(frozen=True)
class Progress:
    step: int
    steps: int
    loss: float
    elapsed_s: float

    @property
    def eta_s(self) -> float:
        return self.elapsed_s / self.step * (self.steps - self.step) if self.step else math.nan


@dataclass
class TrainingReport:
    steps: int
    examples: int
    first_loss: float
    last_loss: float
    seconds: float
    losses: list[float] = field(default_factory=list)


def _encode(tokenizer, example: Example, answer_format: AnswerFormat) -> tuple[list[int], list[int]]:
    prompt = tokenizer(answer_format.prompt(example.query))["input_ids"]
    answer = tokenizer(answer_format.write(example.answer), add_special_tokens=False)["input_ids"]
    answer.append(tokenizer.eos_token_id)
    return prompt + answer, [-100] * len(prompt) + answer


def _batch(tokenizer, rows: Sequence[tuple[list[int], list[int]]], device: str):
    import torch

    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = [ids + [pad] * (width - len(ids)) for ids, _ in rows]
    labels = [labels + [-100] * (width - len(labels)) for _, labels in rows]
    mask = [[1] * len(row) + [0] * (width - len(row)) for row, _ in rows]
    return {
        "input_ids": torch.tensor(ids, device=device),
        "attention_mask": torch.tensor(mask, device=device),
        "labels": torch.tensor(labels, device=device),
    }


def train_adapter(
    base: Path,
    output: Path,
    examples: Sequence[Example],
    config: TrainingConfig,
    on_progress: Callable[[Progress], None] | None = None,
) -> TrainingReport:
    """Train a LoRA on ``examples`` over the base model folder ``base``; write it to ``output``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    if not examples:
        raise ValueError("no training examples")
    transformers_logging.disable_progress_bar()
    torch.manual_seed(config.seed)
    if config.device == "cpu":
        torch.set_flush_denormal(True)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, config.dtype)).to(config.device)
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=2 * config.rank,
        target_modules=list(TARGET_MODULES),
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1, config.warmup_steps))
        * max(0.05, 1 - step / max(1, config.steps)),
    )  # fmt: skip
    answer_format = FORMATS[config.answer_format]
    encoded = [_encode(tokenizer, example, answer_format) for example in examples]
    order = list(range(len(encoded)))
    rng = random.Random(config.seed)
    rng.shuffle(order)
    losses: list[float] = []
    started = time.perf_counter()
    cursor = 0
    for step in range(1, config.steps + 1):
        chosen = []
        for _ in range(config.batch_size):
            if cursor == len(order):
                rng.shuffle(order)
                cursor = 0
            chosen.append(encoded[order[cursor]])
            cursor += 1
        loss = model(**_batch(tokenizer, chosen, config.device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(round(loss.item(), 4))
        if on_progress is not None:
            on_progress(Progress(step, config.steps, losses[-1], time.perf_counter() - started))
    model.save_pretrained(output, safe_serialization=True)
    config_file = output / "adapter_config.json"
    adapter_config = json.loads(config_file.read_text())
    adapter_config["base_model_name_or_path"] = base.name
    config_file.write_text(json.dumps(adapter_config, indent=2))
    mark_format(output, answer_format)
    return TrainingReport(
        steps=config.steps,
        examples=len(examples),
        first_loss=losses[0],
        last_loss=losses[-1],
        seconds=round(time.perf_counter() - started, 1),
        losses=losses,
    )
