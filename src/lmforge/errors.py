"""The one exception type for user mistakes.

The CLI prints a UserError as a single line (``error: ...``) and exits with status 2,
never a traceback: bad paths, unknown presets, malformed recipes and the like.
"""


class UserError(Exception):
    """A mistake in what the user asked for, reported as one clear line."""
