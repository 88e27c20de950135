"""``omnivox serve`` in a subprocess: the helpers live in ``devtools.serve``, shared with bench/."""

from __future__ import annotations

from devtools.serve import OMNIVOX, REPO_ROOT, ServedProcess, omnivox_serve, serve_process

__all__ = ["OMNIVOX", "REPO_ROOT", "ServedProcess", "omnivox_serve", "serve_process"]
