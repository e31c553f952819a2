"""A process dying at a named step of a key expiry run (`KeyLifecycle(after_step=...)`)."""

from __future__ import annotations


class Crash(BaseException):  # the process dying mid-step: nothing in it may catch this
    """Stands for the process dying at a step."""


def crash_at(step_name: str):
    def after_step(step: str, _key: str) -> None:
        if step == step_name:
            raise Crash(step)

    return after_step
