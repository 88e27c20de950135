"""omnivox: OpenAI's Chat Completions audio API, served by open-weight models."""

__version__ = "0.1.0"
