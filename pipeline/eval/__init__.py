"""Evaluation: answer held-out questions with the base and new student, score, compare."""
