"""The one base exception of the ``unet`` package."""


class UNetError(ValueError):
    """Bad model, checkpoint, training data or training config; the message
    names the culprit and the fix."""
