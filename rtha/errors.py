"""User-facing errors: the CLI prints these as one line, never a traceback."""


class RthaError(Exception):
    """A problem with the user's input (file, value, device) rather than a bug.

    The message is one line naming the offending file or value and what was
    expected; ``rtha`` prints it as ``rtha: error: <message>`` and exits with 2.
    """


def read_text(path, what: str, error: type[RthaError] = RthaError) -> str:
    """The text of a file the user named; ``error`` naming ``path`` and ``what``
    (e.g. ``"listeners file"``) when it is missing or unreadable."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot read {what} ({e})") from None
