"""Access control: API keys, per-key rate limits by model class, and the usage ledger.

``server`` asks one collaborator (``gate.AccessControl``) three things per
request: who is calling (``authenticate``), may they start now (``admit``, then
``Admission.charge`` once the prompt is counted), and what did it cost (the
admission's finalizer writes the ledger row). The parts behind it are small
plug points, each a Protocol with a registry in ``setup``: a key store, a
limiter (in-process or Redis), a ledger (SQLite or Redis).

Nothing here knows HTTP: errors are raised from ``omnivox.errors`` and headers
are plain ``dict[str, str]``.
"""
