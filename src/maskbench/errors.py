"""One exception type for everything a user can fix; the CLI turns it into exit code 2."""


class MaskbenchError(ValueError):
    """A problem with the user's input, configuration or files, stated in one actionable line."""


class ConfigError(MaskbenchError):
    """An invalid configuration value; `key` is the dotted path of the offending entry."""

    def __init__(self, message: str, key: str | None = None):
        self.key = key
        self.bare_message = message
        super().__init__(f"{key}: {message}" if key else message)

    def under(self, prefix: str) -> "ConfigError":
        """The same error with its key placed under a parent section."""
        if not prefix:
            return self
        key = f"{prefix}.{self.key}" if self.key else prefix
        return ConfigError(self.bare_message, key)


class DataError(MaskbenchError):
    """Unreadable, empty, malformed or mismatched input data."""


class CheckpointError(MaskbenchError):
    """A missing, corrupted or incompatible checkpoint or model folder."""
