"""The error tree for expected, user-facing failures (bad input, missing files, wrong options).

A `SteelscanError` is a user's mistake: the CLI prints its message on one line and exits 2, the service
answers 4xx. Anything else is a bug and shows its traceback. It deliberately does not subclass ValueError,
so that a ValueError raised by a bug inside a library is never mistaken for bad input.
"""


class SteelscanError(Exception):
    """Bad input: the message says what was expected and what arrived."""


class DataError(SteelscanError):
    """A data set, label file or image that cannot be read as expected."""


class ImageError(DataError):
    """An image file that cannot be used: unreadable, truncated, too large, too small, wrong depth."""


class ModelFileError(SteelscanError):
    """A checkpoint or artifact that is missing, empty, truncated or not steelscan's."""


class ConfigError(SteelscanError):
    """A recipe or option that does not validate."""
