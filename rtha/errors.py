"""User-facing errors: the CLI prints these as one line, never a traceback."""


class RthaError(Exception):
    """A problem with the user's input (file, value, device) rather than a bug.

    The message is one line naming the offending file or value and what was
    expected; ``rtha`` prints it as ``rtha: error: <message>`` and exits with 2.
    """
