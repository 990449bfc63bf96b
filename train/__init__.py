"""lorastack.train: data preparation, LoRA fine-tuning, evaluation and publishing."""
