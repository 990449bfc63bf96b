"""The app's tabs, one module each: its handlers (plain functions of the gateway client and
the event's inputs, returning the event's outputs) and `build`, which lays out its
components and wires their events to those handlers."""

from __future__ import annotations

# Events that call the gateway run this many at once (Gradio's default is one at a time):
# several people may chat at once, and the gateway limits what reaches the engine.
# Admin actions keep the default, one at a time.
CONCURRENCY_LIMIT = 32
