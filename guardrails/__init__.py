"""lorastack.guardrails: PII detection and masking for prompts, answers and training data."""
