"""Parsers: evidence files (collect_env, nvidia-smi, pip lists, vLLM logs, Dockerfiles, compose, .env) into facts."""
