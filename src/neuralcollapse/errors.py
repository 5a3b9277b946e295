"""The exceptions that carry a user's mistake, as opposed to a bug.

The command line turns these (and only these, plus operating-system errors such as a
missing file or a full disk) into one line on stderr; anything else is a bug and keeps
its traceback.

* :class:`UsageError` (exit status 2): a bad argument, file or value; the message names it
  and the fix. It is a ``ValueError``, so library callers can catch either.
* :class:`ConfigError` (exit status 2): a config key with an unusable value.
* :class:`RunFailed` (exit status 1): a run that started correctly and then failed (the
  loss became NaN); the message says what the run directory holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["ConfigError", "RunFailed", "UsageError", "usage_errors"]


class UsageError(ValueError):
    """Bad input from the user: the message names the value and the fix."""


class ConfigError(UsageError):
    """A config value that cannot be used; the message names the key and what is allowed."""


class RunFailed(RuntimeError):
    """A run that started and then failed; the message says what was saved."""


@contextlib.contextmanager
def usage_errors(
    context: str | None = None, catch: tuple[type[Exception], ...] = (ValueError,)
) -> Iterator[None]:
    """Inside, a ``ValueError`` raised by library validation becomes a :class:`UsageError`
    (prefixed with ``context`` when given). Wrap only code whose ValueErrors are about the
    user's input, never whole commands, so that bugs keep their tracebacks. ``catch``
    widens the net where other types also come from the user's values (a model built
    from user options raises TypeError for an option of the wrong type)."""
    try:
        yield
    except UsageError:
        raise
    except catch as exc:
        message = f"{context}: {exc}" if context else str(exc)
        raise UsageError(" ".join(message.split())) from exc
