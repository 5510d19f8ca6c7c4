"""Leadflow tooling: the `leadflow` command, the embedded stack, the process supervisor, the demo
and a local webhook receiver. No service imports it."""
