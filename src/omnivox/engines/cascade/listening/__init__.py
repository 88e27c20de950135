"""Listening: voice activity, speech recognition, and transcripts remembered per clip."""
