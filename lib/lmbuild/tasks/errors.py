"""The one exception of `lmbuild.tasks`: a request that cannot be met (unknown family, bad
difficulty key or value, too few distinct test problems), as one line that names the key, the
value and what to change."""

from __future__ import annotations


class TaskError(Exception):
    """A bad task request; the message is one line: `tasks: <key>: <rule>, got <value>`."""


def fail(key: str, rule: str, value: object = ..., hint: str = "") -> TaskError:
    """Build the one-line error: `tasks: sort.length: must be ..., got 'x'` (+ `; hint`)."""
    msg = f"tasks: {key}: {rule}"
    if value is not ...:
        msg += f", got {value!r}"
    if hint:
        msg += f"; {hint}"
    return TaskError(msg)
