"""Structured output: JSON schemas and string formats as llama.cpp grammars (GBNF)."""
