"""Adapters trained here: examples from the directory, LoRA training with peft, held-out evaluation."""
