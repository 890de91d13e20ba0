"""Errors whose messages are shown to users as one line, with a fix."""


class HarnessError(Exception):
    """A problem the user can fix. The CLI prints `str(err)` and exits 2, no traceback.

    Args:
        message: What is wrong and where (file, field, name).
        hint: How to fix it, appended as "; fix: ...".
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message}; fix: {hint}" if hint else message)


class ConfigError(HarnessError):
    """Invalid suite, policy or spec file."""


class ModelError(HarnessError):
    """A base model or adapter that cannot be loaded or does not fit."""


class AssetError(HarnessError):
    """An offline asset that cannot be fetched, verified or found."""


class RunLogError(HarnessError):
    """A run directory that is missing, corrupt, or of another schema version."""
