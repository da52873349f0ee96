"""The model half: engines with a resident base model and LoRA adapters, and the extraction task."""
