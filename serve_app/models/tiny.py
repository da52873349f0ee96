"""A tiny random model for fast engine tests (``serve-app make-demo-model --tiny``): nothing downloaded.

The tokenizer is a byte-level BPE trained on the shipped directory sample and the task's prompt; the
base is a Qwen2-architecture model with random float32 weights; ``job_22`` and ``job_23`` are LoRA
adapters with random (non-zero) weights, so each changes the output. They exercise exactly the loading
code a user's Hugging Face model folder and adapter folders go through, in milliseconds per generation;
their answers are noise. They carry no ``answer_format.json``, like adapters trained before answer formats
were versioned, and are prompted in format 1 (JSON). The real demo (``serve_app.models.demo``) answers.
"""

from __future__ import annotations

import json
from pathlib import Path

from serve_app.directory.records import demo_cnaps_path, read_cnaps
from serve_app.models.demo import DemoModel, build_model_set
from serve_app.models.task import FORMATS

KIND = "tiny"
SEEDS = {"job_22": 22, "job_23": 23}
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]


def _corpus() -> list[str]:
    names = [record.name for record in read_cnaps(demo_cnaps_path())]
    answers = [json.dumps({"bank": n[:6], "city": n[6:9], "branch": n[-6:]}, ensure_ascii=False) for n in names[:2000]]
    return [FORMATS[1].prompt(n) for n in names] + answers


def build_tokenizer(vocab_size: int = 4096):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def build_base_model(path: Path, seed: int = 7, hidden_size: int = 128, layers: int = 2) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        # A wide init gives confident logits, so greedy decoding has clear winners and batched and
        # single runs pick the same tokens despite float rounding.
        initializer_range=0.2,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


def build_adapter(base: Path, path: Path, seed: int, rank: int = 8) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        lora_dropout=0.0,
        init_lora_weights=False,  # random A and B: the adapter changes outputs, as a trained one would
    )
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(path, safe_serialization=True)
    config_file = path / "adapter_config.json"
    adapter_config = json.loads(config_file.read_text())
    adapter_config["base_model_name_or_path"] = base.name
    config_file.write_text(json.dumps(adapter_config, indent=2))


def make_tiny_model(models_dir: Path, force: bool = False) -> DemoModel:
    """Build the tiny base and random ``job_22``/``job_23`` under ``models_dir`` where the demo's go
    (skipped where present, unless ``force``)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    return build_model_set(
        models_dir, KIND, force, build_base_model, lambda base, folder, name: build_adapter(base, folder, SEEDS[name])
    )
