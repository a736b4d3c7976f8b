"""The one boundary between bullet_py and application code: time limits, errors, cancellation.

Every handler callback (``on_open``, ``on_message``, ``on_info``, ``on_close``)
and every Stream action runs through :func:`call_bounded`. It gives the same
answers everywhere: the result; :class:`CallbackTimeout` when the time limit
passed; :class:`CallbackFailed` for anything else the callback raised (even
``SystemExit``, ``GeneratorExit`` or a ``CancelledError`` of its own making).
Only a real cancellation of the calling task (shutdown, a client gone) passes
through as ``CancelledError``. Callers decide what a failure means to the
client (nothing, or an ``{error, Reason, Detail}`` reply) and log it.

A coroutine's first step runs before any timer is armed: a callback that
returns without suspending (most do) costs no timer, and a timer per message
costs more than the rest of the dispatch together. The limit counts from the
first suspension.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import CoroutineType
from typing import Any, NoReturn


class CallbackTimeout(Exception):
    """The callback did not finish within its limit (it was cancelled)."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"{timeout:g}s")
        self.timeout = timeout


class CallbackFailed(Exception):
    """The callback raised; ``original`` is what it raised."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(type(original).__name__)
        self.original = original


class ThreadRaised(Exception):
    """Carries a non-Exception (GeneratorExit, SystemExit...) out of a worker thread.

    Awaiting a future whose exception is ``GeneratorExit`` makes CPython 3.11
    re-raise it in the awaiting coroutine even after it was handled there, so
    such exceptions must not travel through the executor future as they are.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(type(original).__name__)
        self.original = original


def call_in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn`` in a worker thread's frame, wrapping what must not cross as it is."""
    try:
        return fn(*args)
    except Exception:
        raise
    except BaseException as exc:
        raise ThreadRaised(exc) from None


async def call_bounded(
    callback: Callable[..., Any], args: tuple[Any, ...], timeout: float | None
) -> Any:
    """Run ``callback(*args)`` (plain, coroutine or awaitable) within ``timeout`` seconds.

    Raises:
        CallbackTimeout: the limit passed.
        CallbackFailed: the callback raised.
        asyncio.CancelledError: the calling task itself was cancelled.
    """
    finished, value = call_start(callback, args)
    if finished:
        return value
    return await call_finish(value, timeout)


def call_start(callback: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
    """The first step of :func:`call_bounded`, run without a coroutine of its own.

    ``(True, result)`` when the callback finished without suspending (most
    do); else ``(False, pending)``, to be given to :func:`call_finish`, which
    applies the time limit. A path run for every message calls these two
    itself instead of awaiting :func:`call_bounded`: a coroutine fewer per
    message. Raises as :func:`call_bounded` does.
    """
    try:
        result = callback(*args)
        if isinstance(result, CoroutineType):  # inspect.iscoroutine, without the call
            try:
                step = result.send(None)
            except StopIteration as done:
                return True, done.value
            return False, _Resume(result, step)
        if inspect.isawaitable(result):
            return False, result
        return True, result
    except BaseException as caught:
        _fail(caught, None, None)


async def call_finish(pending: Awaitable[Any], timeout: float | None) -> Any:
    """Await what :func:`call_start` left pending, within ``timeout`` seconds from now."""
    deadline: asyncio.Timeout | None = None
    try:
        if timeout is None:
            return await pending
        deadline = asyncio.timeout(timeout)
        async with deadline:
            return await pending
    except BaseException as caught:
        _fail(caught, deadline, timeout)


def _fail(
    caught: BaseException, deadline: asyncio.Timeout | None, timeout: float | None
) -> NoReturn:
    """Raise what a callback's exception becomes for the caller (see the module's docstring).

    Called from the ``except`` clause that caught it.
    """
    exc = caught.original if isinstance(caught, ThreadRaised) else caught
    # A cancellation of the calling task (not one the callback made up) is
    # in progress: let it through. Asked here, not on entry: the question
    # costs more than a callback that returns at once.
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        if isinstance(exc, asyncio.CancelledError):
            raise caught
        raise asyncio.CancelledError() from exc
    if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
        raise CallbackTimeout(timeout or 0.0) from None
    raise CallbackFailed(exc) from None


class _Resume:
    """Await the rest of a coroutine whose first step has already run.

    What ``await`` does for a fresh coroutine, starting from the value its
    first ``send(None)`` yielded: every later value, result and exception
    (a cancellation included) passes between the task and the coroutine
    unchanged.
    """

    __slots__ = ("_coro", "_step")

    def __init__(self, coro: Coroutine[Any, Any, Any], step: Any) -> None:
        self._coro = coro
        self._step = step

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, step = self._coro, self._step
        self._step = None
        while True:
            try:
                sent = yield step
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    step = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    step = coro.send(sent)
                except StopIteration as done:
                    return done.value
