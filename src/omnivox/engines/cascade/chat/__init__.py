"""The chat model: llama.cpp generation, sampling, the prompt, tool calls and answer constraints."""
