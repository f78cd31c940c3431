"""User-facing error types that need no heavy imports (the CLI catches them without loading torch)."""


class ModelLoadError(RuntimeError):
    """A model that cannot be loaded, with what to do about it."""
