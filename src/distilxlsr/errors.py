"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
    """A problem the user caused and can fix: the CLI prints the message alone, no traceback.

    The message is one sentence that names the file or value and says what to do.
    """
