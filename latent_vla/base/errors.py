"""The one error type for a user's mistake, at the bottom floor so every package can raise it."""


class UserError(Exception):
    """A problem with what the user gave (a setting, a path, a file), not a bug.

    The ``latent-vla`` command prints its message as one line on stderr and exits non-zero, with no
    traceback (``--debug`` shows one). The message names the bad value and what is allowed.
    """
