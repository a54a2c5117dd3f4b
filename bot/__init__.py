"""Sprout's GitHub-facing shell: webhook app, durable store, worker, handlers."""
