"""Waiting for a condition: every wait in the tests is a poll with a deadline."""

import time


def wait_until(predicate, timeout, message, interval=0.005):
    """Poll predicate() until it returns something truthy (returned) or the
    deadline passes (AssertionError with message, which may be a callable)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval)
