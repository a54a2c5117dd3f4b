"""Filters: each a plain function over records with its own config and drop counter."""
