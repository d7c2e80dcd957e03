"""Firm scoping: which firm the current request, task or command acts for.

The active scope lives in a context variable, so it follows a request, a Celery task or an
async consumer and never leaks to the next one (each entry point sets it and resets it).
``FirmScopedManager`` reads it: inside a firm scope every query is filtered to that firm;
inside ``unscoped()`` nothing is filtered (platform operators, audit verification); with no
scope at all a query is refused, so a forgotten tenant filter fails loudly in tests and in
production alike instead of leaking another firm's rows.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

_ALL = object()
_scope: contextvars.ContextVar[object | int | None] = contextvars.ContextVar("octopus_firm_scope", default=None)


class FirmScopeError(RuntimeError):
    """A firm-owned model was queried with no firm scope active."""


def current_firm_id() -> int | None:
    value = _scope.get()
    return value if isinstance(value, int) else None


def scope_is_unscoped() -> bool:
    return _scope.get() is _ALL


def scope_is_active() -> bool:
    return _scope.get() is not None


@contextmanager
def firm_scope(firm_id: int) -> Iterator[None]:
    """Act for one firm: queries of firm-owned models see only its rows."""
    if not isinstance(firm_id, int):
        raise TypeError("firm_scope takes a firm id (int)")
    token = _scope.set(firm_id)
    try:
        yield
    finally:
        _scope.reset(token)


@contextmanager
def unscoped() -> Iterator[None]:
    """Deliberately act across firms (platform superusers, audit verification, migrations)."""
    token = _scope.set(_ALL)
    try:
        yield
    finally:
        _scope.reset(token)


def set_scope(value: int | None) -> contextvars.Token:
    return _scope.set(value)


def reset_scope(token: contextvars.Token) -> None:
    _scope.reset(token)
