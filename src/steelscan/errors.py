"""The one exception type for expected, user-facing failures (bad input, missing files)."""


class SteelscanError(ValueError):
    """Bad input: the message says what was expected and what arrived. The CLI prints it on one line."""
