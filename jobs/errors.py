"""The one base exception of the ``jobs`` package."""


class ConfigError(ValueError):
    """A job config or command-line argument is wrong; the message names the
    field (or file) and the fix."""
