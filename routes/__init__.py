"""Example CRM integration routes, run with ``uv run eip run routes/``."""
