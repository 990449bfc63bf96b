"""lorastack.serve: the vLLM engine and the OpenAI-compatible gateway in front of it."""
