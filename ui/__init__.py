"""lorastack.ui: the Gradio chat app, a plain HTTP client of the gateway."""
