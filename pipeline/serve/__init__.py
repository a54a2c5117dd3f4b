"""`sprout model serve`: an OpenAI-compatible server for any Hugging Face causal-LM directory."""
