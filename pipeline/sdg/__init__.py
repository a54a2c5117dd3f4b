"""Synthetic data generation: documents, prompts, teachers, generators, cache."""
