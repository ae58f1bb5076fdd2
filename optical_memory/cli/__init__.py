"""The ``optical-memory`` command: a thin shell over the public API, and the transcript files it reads."""
