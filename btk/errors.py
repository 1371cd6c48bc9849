"""The one error type for mistakes a user can fix.

The command line turns a :class:`BtkError` into a single line on standard error and a
non-zero exit; a traceback is shown only with ``--debug`` or ``BTK_DEBUG=1``.
"""


class BtkError(Exception):
    """A problem with the user's input, data or configuration, explained in one line."""


class DuplicateNameError(BtkError):
    """Two plugins registered something of the same kind under the same name."""


class UnreadableInputError(BtkError):
    """One input (an image file, a slice) could not be read; readers raise it per item."""


class DivergedError(BtkError):
    """Training produced a non-finite loss. Resuming would repeat it, so no checkpoint is kept."""
