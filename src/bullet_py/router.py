"""The Stream layer: ``{Action, Msg}`` messages routed to registered handlers.

A page's ``Stream.action(Name, Msg)`` sends ``{Name, Msg}`` encoded with BERT.
A :class:`Router` decodes it, calls the handler registered for ``Name`` and
encodes what the handler returns as the reply, sent back on the path the
message came by (a POST answer or a frame on the same WebSocket). ``sync`` is
built in: ``{sync, {Method, Model, Props}}`` calls a registered model object.

Client-supplied names are only ever keys into plain dicts filled at
registration time: never ``getattr``, never an import (docs/robustness.md item 38).
Every failure becomes ``{error, Reason, Detail}`` for that client only, and
the session keeps serving. See ``docs/stream.md`` for the full contract.

Usage::

    router = Router()

    @router.action("ping")
    def ping(ctx, msg):
        return (Atom("pong"), msg)

    @router.model("character")
    class Character:
        def read(self, ctx, props):
            return ok(STATE)

    setup(app, "/bullet", router)   # a Router is a handler factory
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

from .boundary import CallbackFailed, CallbackTimeout, call_bounded, call_in_thread
from .codec import Codec
from .codec.bert import BertCodec
from .codec.json_codec import JsonCodec
from .codec.terms import Atom, dict_to_proplist, proplist_to_dict
from .core.text import exceeds, utf16_units
from .exceptions import DecodeError, EncodeError
from .handler import Handler
from .logs import log_event, session_hash

if TYPE_CHECKING:
    from .connection import Connection, Pushes

__all__ = [
    "DEFAULT_TIMEOUT",
    "ERROR_REASONS",
    "SYNC_METHODS",
    "Context",
    "Router",
    "StreamHandler",
    "dict_to_props",
    "error",
    "ok",
    "props_to_dict",
]

logger = logging.getLogger("bullet_py")

SYNC_METHODS: Final = ("create", "read", "update", "patch", "delete")
"""The only methods a ``sync`` message may name (the Backbone set)."""

DEFAULT_TIMEOUT: Final = 10.0
"""Seconds one handler call may take before the client gets ``{error, timeout, _}``."""

ERROR_REASONS: Final = frozenset(
    {
        "empty",
        "undecodable",
        "bad_request",
        "unknown_action",
        "unknown_model",
        "unknown_method",
        "handler_error",
        "timeout",
        "bad_reply",
    }
)
"""Every ``Reason`` the router itself puts in ``{error, Reason, Detail}``."""

LOG_NAME_MAX: Final = 64
"""Client-supplied names are cut to this many characters in logs and error details."""

# Names a page cannot reach: the codec turns these atoms into True/False/None.
_UNREACHABLE_NAMES: Final = frozenset({"true", "false", "null"})
_MAX_ATOM_CHARS: Final = 255

_SYNC: Final = Atom("sync")
_OK: Final = Atom("ok")
_ERROR: Final = Atom("error")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

props_to_dict = proplist_to_dict
"""Proplist ``[{Key, Value}]`` → ``dict`` (re-exported from :mod:`bullet_py.codec.terms`)."""

dict_to_props = dict_to_proplist
"""``dict`` → proplist ``[(Atom(key), value)]`` (re-exported from :mod:`bullet_py.codec.terms`)."""


def ok(props: Any) -> tuple[Atom, Atom, Any]:
    """The success reply of a model: ``{sync, ok, Props}`` (a dict goes out as a proplist)."""
    return (_SYNC, _OK, props)


def error(reason: Any) -> tuple[Atom, Atom, Any]:
    """A model's refusal: ``{sync, error, Reason}``; a plain ``str`` reason becomes an atom."""
    if type(reason) is str:
        reason = Atom(reason)
    return (_SYNC, _ERROR, reason)


# --- the per-session context ------------------------------------------------


class Context:
    """What a Stream handler gets as ``ctx``: its session and term-level pushes.

    One context lives as long as its session; the session's handler calls run
    one at a time, so a handler may keep per-session data in ``ctx.state``.
    ``send`` and ``broadcast`` may also be called from a ``blocking=True``
    handler running in a worker thread: they then hand the message to the event
    loop instead of touching the session directly.
    """

    __slots__ = ("_loop", "conn", "max_reply_size", "router")

    def __init__(self, router: Router, conn: Connection, *, max_reply_size: int) -> None:
        self.router = router
        self.conn = conn
        self.max_reply_size = max_reply_size
        self._loop = asyncio.get_running_loop()

    @property
    def hub(self) -> Pushes:
        """Push raw text to other sessions, groups or everyone."""
        return self.conn.hub

    @property
    def session_id(self) -> str:
        return self.conn.session_id

    @property
    def state(self) -> dict[str, Any]:
        """Per-session storage (the Connection's ``state`` dict)."""
        return self.conn.state

    def encode(self, term: Any) -> str:
        """Encode ``term`` with the router's codec, refusing what the page could not take.

        Raises:
            EncodeError: the codec's reason, or ``too_big`` past ``max_reply_size``.
        """
        text = self.router.codec.encode(term)
        if exceeds(text, self.max_reply_size):
            raise EncodeError("too_big", f"{utf16_units(text)} > {self.max_reply_size} units")
        return text

    def send(self, term: Any) -> bool:
        """Push ``term`` to this session; False if the session is closed or its queue full.

        From a worker thread the message is handed to the event loop and True
        only means it was handed over.
        """
        text = self.encode(term)
        if self._on_loop():
            return self.conn.send(text)
        self._loop.call_soon_threadsafe(self.conn.send, text)
        return True

    def broadcast(self, term: Any, *, exclude_self: bool = True, group: str | None = None) -> None:
        """Push ``term`` to every session (of ``group``), by default all but this one.

        The term is encoded once, here (so an unencodable term raises in the
        handler); delivery is scheduled on the event loop at once, in call order,
        and never waits on a slow client.
        """
        text = self.encode(term)
        exclude = self.conn.session_id if exclude_self else None
        if self._on_loop():
            self._spawn_broadcast(text, group, exclude)
        else:
            self._loop.call_soon_threadsafe(self._spawn_broadcast, text, group, exclude)

    def _spawn_broadcast(self, text: str, group: str | None, exclude: str | None) -> None:
        self.conn.spawn(self.conn.hub.broadcast(text, group=group, exclude=exclude))

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False


# --- registrations and routing ---------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    """One callable a message can reach, with how to run it."""

    fn: Callable[..., Any]
    label: str  # registered names only: safe to log
    blocking: bool
    timeout: float | None  # None: the router's default


@dataclass(frozen=True, slots=True)
class _Model:
    instance: object
    methods: Mapping[str, _Entry]  # method name (from SYNC_METHODS) → bound callable


@dataclass(frozen=True, slots=True)
class _Route:
    """A message that resolved to a call."""

    entry: _Entry
    arg: Any  # the action's Msg, or the sync Props as a dict
    ref: tuple[Any, ...]  # () or (Ref,): appended to the reply tuple
    is_sync: bool


#: A Ref is a correlation tag (the project's page sends an integer): at most
#: this many terms, strings and binaries counted in units, atoms as one.
MAX_REF_TERMS: Final = 16
MAX_REF_UNITS: Final = 256


def ref_is_small(ref: Any) -> bool:
    """True if ``ref`` holds at most :data:`MAX_REF_TERMS` terms and :data:`MAX_REF_UNITS`
    units of text; stops walking as soon as either budget is spent."""
    terms = 0
    units = 0
    stack = [ref]
    while stack:
        term = stack.pop()
        terms += 1
        if terms > MAX_REF_TERMS:
            return False
        if isinstance(term, tuple | list):
            if len(term) > MAX_REF_TERMS:
                return False
            stack.extend(term)
        elif isinstance(term, dict):
            if len(term) > MAX_REF_TERMS:
                return False
            for key, value in term.items():
                stack.append(key)
                stack.append(value)
        elif isinstance(term, str | bytes | bytearray):
            units += len(term)
            if units > MAX_REF_UNITS:
                return False
        elif isinstance(term, int) and term.bit_length() > 64:
            return False
    return True


class _ErrorReply(Exception):
    """Answer the client ``{error, reason, detail}`` (already logged)."""

    def __init__(self, reason: str, detail: str, ref: tuple[Any, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.ref = ref


def _name_of(term: Any, text_names: bool) -> str | None:
    """The name in a name position (Action, Method, Model); None if it is no name at all.

    Names are atoms; with ``text_names`` (a codec without atoms, e.g. JSON)
    plain strings too. The codec turns the atoms ``true``/``false``/``null``
    into Python values: they are names nobody can register, so they give
    ``unknown_*``, not ``bad_request``.
    """
    if isinstance(term, Atom) or (text_names and isinstance(term, str)):
        return str(term)
    if term is True:
        return "true"
    if term is False:
        return "false"
    if term is None:
        return "null"
    return None


def _clip(name: str) -> str:
    return name[:LOG_NAME_MAX]


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{kind} name must be a non-empty str, got {name!r}")
    if len(name) > _MAX_ATOM_CHARS:
        raise ValueError(f"{kind} name longer than an atom can be ({_MAX_ATOM_CHARS})")
    if name in _UNREACHABLE_NAMES:
        raise ValueError(
            f"{kind} name {name!r} cannot be reached: the page's atom decodes to a value"
        )
    return str(name)


def _check_blocking(fn: Callable[..., Any], blocking: bool, label: str) -> None:
    if blocking and inspect.iscoroutinefunction(fn):
        raise ValueError(f"{label}: blocking=True is for plain functions, not coroutines")


class Router:
    """Routes Stream messages to registered actions and models; a handler factory.

    Args:
        codec: text ↔ term; ``BertCodec()`` by default,
            ``BertCodec(booleans="2012")`` for pages on the 2012 BERT-JS line.
        timeout: seconds one handler call may take (None: no limit). Keep it
            below the endpoint's ``Options.handler_timeout``, which abandons the
            call silently.
        max_reply_size: cap on an encoded reply or push, in UTF-16 code units;
            None: the endpoint's ``max_message_size``.
        text_names: accept strings where names (Action, Method, Model) belong.
            None: only for :class:`JsonCodec`, which has no atoms; BERT pages
            must send atoms.
    """

    def __init__(
        self,
        codec: Codec | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_reply_size: int | None = None,
        text_names: bool | None = None,
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 or None, got {timeout!r}")
        if max_reply_size is not None and max_reply_size < 1:
            raise ValueError("max_reply_size must be >= 1")
        self.codec: Codec = codec if codec is not None else BertCodec()
        if text_names is None:
            text_names = isinstance(self.codec, JsonCodec)
        self.text_names = text_names
        self.timeout = timeout
        self.max_reply_size = max_reply_size
        self._actions: dict[str, _Entry] = {}
        self._models: dict[str, _Model] = {}
        self._on_open: list[Callable[[Context], Any]] = []
        self._on_close: list[Callable[[Context], Any]] = []
        self._on_info: Callable[[Context, Any], Any] | None = None

    def __repr__(self) -> str:
        return f"<Router actions={sorted(self._actions)} models={sorted(self._models)}>"

    # --- the handler factory -------------------------------------------------

    def __call__(self) -> StreamHandler:
        """One handler per session: ``setup(app, "/bullet", router)`` works."""
        return StreamHandler(self)

    @property
    def handler_factory(self) -> Callable[[], StreamHandler]:
        return self

    # --- registration ----------------------------------------------------------

    def action(
        self, name: str, *, blocking: bool = False, timeout: float | None = None
    ) -> Callable[[F], F]:
        """Decorator: ``fn(ctx, msg)`` (plain or async) answers ``{name, Msg}``.

        Its return value is encoded and sent back; None sends nothing.
        ``blocking=True`` runs a plain function in a worker thread so it cannot
        stall the event loop. ``timeout`` overrides the router's for this action.
        """

        def register(fn: F) -> F:
            self.add_action(name, fn, blocking=blocking, timeout=timeout)
            return fn

        return register

    def add_action(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        blocking: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Register ``fn`` for action ``name`` (the non-decorator form of :meth:`action`)."""
        name = _check_name("action", name)
        if name == "sync":
            raise ValueError("'sync' is built in: register models with router.model()")
        if name in self._actions:
            raise ValueError(f"action {name!r} is already registered")
        if not callable(fn):
            raise TypeError(f"action {name!r}: {fn!r} is not callable")
        label = f"action {name}"
        _check_blocking(fn, blocking, label)
        self._actions[name] = _Entry(fn, label, blocking, timeout)

    @overload
    def model(
        self, name: str, *, blocking: bool = ..., timeout: float | None = ...
    ) -> Callable[[T], T]: ...

    @overload
    def model(
        self, name: str, obj: T, *, blocking: bool = ..., timeout: float | None = ...
    ) -> T: ...

    def model(
        self,
        name: str,
        obj: Any = None,
        *,
        blocking: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Register the model ``name`` for ``sync``; with no ``obj``, a class decorator.

        ``obj`` is an instance, or a class (instantiated once, with no
        arguments: one model object serves every session). Its methods among
        ``create/read/update/patch/delete`` are called as ``method(ctx, props)``;
        a ``sync(ctx, method, props)`` method takes the ones it lacks. They are
        looked up now, by those fixed names only, and kept in a dict.
        """
        if obj is None:

            def register(target: T) -> T:
                self._add_model(name, target, blocking=blocking, timeout=timeout)
                return target

            return register
        self._add_model(name, obj, blocking=blocking, timeout=timeout)
        return obj

    def _add_model(self, name: str, obj: object, *, blocking: bool, timeout: float | None) -> None:
        name = _check_name("model", name)
        if name in self._models:
            raise ValueError(f"model {name!r} is already registered")
        instance = obj() if isinstance(obj, type) else obj
        fallback = getattr(instance, "sync", None)
        methods: dict[str, _Entry] = {}
        for method in SYNC_METHODS:
            fn = getattr(instance, method, None)
            label = f"model {name}.{method}"
            if callable(fn):
                _check_blocking(fn, blocking, label)
                methods[method] = _Entry(fn, label, blocking, timeout)
            elif callable(fallback):
                _check_blocking(fallback, blocking, label)
                methods[method] = _Entry(_bind_method(fallback, method), label, blocking, timeout)
        if not methods:
            raise TypeError(
                f"model {name!r} defines none of {', '.join(SYNC_METHODS)} and no sync()"
            )
        self._models[name] = _Model(instance, types.MappingProxyType(methods))

    def on_open(self, fn: F) -> F:
        """Decorator: ``fn(ctx)`` runs when a session starts (plain or async)."""
        self._on_open.append(fn)
        return fn

    def on_close(self, fn: F) -> F:
        """Decorator: ``fn(ctx)`` runs once when a session ends (plain or async)."""
        self._on_close.append(fn)
        return fn

    def on_info(self, fn: F) -> F:
        """Decorator: ``fn(ctx, info)`` turns a ``hub.info`` payload into a term to push.

        Without it, the payload itself is encoded and pushed.
        """
        self._on_info = fn
        return fn

    @property
    def models(self) -> Mapping[str, object]:
        """Registered model objects by name (read-only)."""
        return types.MappingProxyType({k: m.instance for k, m in self._models.items()})

    @property
    def actions(self) -> Mapping[str, Callable[..., Any]]:
        """Registered action callables by name (read-only)."""
        return types.MappingProxyType({k: e.fn for k, e in self._actions.items()})

    # --- per session -------------------------------------------------------------

    def new_context(self, conn: Connection) -> Context:
        """The context for one session (its reply cap resolved from the endpoint)."""
        limit = self.max_reply_size
        if limit is None:
            limit = conn.options.max_message_size
        return Context(self, conn, max_reply_size=limit)

    async def dispatch(self, ctx: Context, message: str) -> str | None:
        """Answer one client message: the encoded reply, or None to send nothing.

        Never raises for anything the client sent or a handler did; a real
        cancellation (shutdown, session gone) still propagates.
        """
        try:
            route = self._resolve(ctx, message)
        except _ErrorReply as err:
            return self._encode_error(err.reason, err.detail, err.ref)
        try:
            result = await self._invoke(ctx, route.entry, route.arg)
            term = self._reply_term(route, result)
            if term is None:
                return None
            return self._encode_reply(ctx, term, route.entry.label)
        except _ErrorReply as err:
            return self._encode_error(err.reason, err.detail, route.ref)

    def _resolve(self, ctx: Context, message: str) -> _Route:
        """Decode and check ``{Action, Msg}``; find what it calls (dict lookups only)."""
        if not message:
            raise self._reject(ctx, message, "empty", "")
        try:
            term = self.codec.decode(message)
        except DecodeError as exc:
            raise self._reject(ctx, message, "undecodable", exc.reason) from None
        except Exception:
            cid = secrets.token_hex(4)
            logger.error("codec %r failed on a message [%s]", self.codec, cid, exc_info=True)
            raise _ErrorReply("undecodable", f"internal:{cid}") from None
        if not isinstance(term, tuple) or len(term) != 2:
            raise self._reject(ctx, message, "bad_request", "expected {Action, Msg}")
        action, msg = term
        name = _name_of(action, self.text_names)
        if name is None:
            raise self._reject(ctx, message, "bad_request", "Action is not an atom")
        if name == "sync":
            return self._resolve_sync(ctx, message, msg)
        entry = self._actions.get(name)
        if entry is None:
            raise self._reject(ctx, message, "unknown_action", name)
        return _Route(entry, msg, (), is_sync=False)

    def _resolve_sync(self, ctx: Context, message: str, msg: Any) -> _Route:
        if not isinstance(msg, tuple) or len(msg) not in (3, 4):
            raise self._reject(
                ctx, message, "bad_request", "sync expects {Method, Model, Props[, Ref]}"
            )
        ref: tuple[Any, ...] = ()
        if len(msg) == 4:
            if not ref_is_small(msg[3]):
                # Checked before the Ref is encoded: echoing a big one would cost
                # the CPU of encoding it twice (docs/stream.md, The Ref extension).
                raise self._reject(ctx, message, "bad_request", "ref_too_big")
            ref = (msg[3],)
            try:
                self.codec.encode(msg[3])
            except Exception:
                raise self._reject(ctx, message, "bad_request", "Ref cannot be echoed") from None
        method_term, model_term, props = msg[0], msg[1], msg[2]
        method = _name_of(method_term, self.text_names)
        if method is None:
            raise self._reject(ctx, message, "bad_request", "Method is not an atom", ref)
        model_name = _name_of(model_term, self.text_names)
        if model_name is None:
            raise self._reject(ctx, message, "bad_request", "Model is not an atom", ref)
        if not isinstance(props, list | dict):  # a dict only comes from JSON objects
            raise self._reject(ctx, message, "bad_request", "Props is not a list", ref)
        try:
            props_dict = proplist_to_dict(props, duplicates="error")
        except DecodeError as exc:
            raise self._reject(ctx, message, "bad_request", f"Props: {exc.reason}", ref) from None
        if method not in SYNC_METHODS:
            raise self._reject(ctx, message, "unknown_method", method, ref)
        model = self._models.get(model_name)
        if model is None:
            raise self._reject(ctx, message, "unknown_model", model_name, ref)
        entry = model.methods.get(method)
        if entry is None:
            raise self._reject(ctx, message, "unknown_method", method, ref)
        return _Route(entry, props_dict, ref, is_sync=True)

    def _reject(
        self,
        ctx: Context,
        message: str,
        reason: str,
        detail: str,
        ref: tuple[Any, ...] = (),
    ) -> _ErrorReply:
        """A client fault: one WARNING line (names clipped), the error reply to send."""
        clipped = _clip(detail)
        log_event(
            logging.WARNING,
            "stream_rejected",
            reason=reason,
            detail=repr(clipped),
            transport=ctx.conn.transport.value,
            session=session_hash(ctx.conn.session_id),
            length=len(message),
        )
        return _ErrorReply(reason, clipped, ref)

    async def _invoke(self, ctx: Context, entry: _Entry, arg: Any) -> Any:
        """Call a handler at the boundary (bullet_py.boundary) under its timeout.

        A timeout answers ``{error, timeout, _}``; anything the handler raised
        (``SystemExit``, ``GeneratorExit`` and a ``CancelledError`` of its own
        making included) answers ``{error, handler_error, Id}``; only a real
        cancellation of this task passes through.
        """
        timeout = entry.timeout if entry.timeout is not None else self.timeout
        try:
            if entry.blocking:
                return await call_bounded(
                    asyncio.to_thread, (call_in_thread, entry.fn, ctx, arg), timeout
                )
            return await call_bounded(entry.fn, (ctx, arg), timeout)
        except CallbackTimeout:
            log_event(
                logging.ERROR,
                "handler_timeout",
                handler=entry.label,
                timeout=timeout,
                session=session_hash(ctx.conn.session_id),
            )
            raise _ErrorReply("timeout", f"{timeout:g}s") from None
        except CallbackFailed as failed:
            cid = secrets.token_hex(4)
            logger.error(
                "stream handler %s raised %s [%s] in session %s",
                entry.label,
                type(failed.original).__name__,
                cid,
                session_hash(ctx.conn.session_id),
                exc_info=failed.original,
            )
            raise _ErrorReply("handler_error", cid) from None

    @staticmethod
    def _reply_term(route: _Route, result: Any) -> Any:
        """What goes back: actions' results as they are; sync results per the rules.

        Sync: None sends nothing (a Ref-bearing call still gets ``{sync, ok, []}``
        so the page can settle it); a tuple tagged with an atom is sent as it is;
        anything else (props: a list or a dict) is wrapped as ``{sync, ok, Result}``.
        The Ref, if any, is appended to the reply tuple.
        """
        if not route.is_sync:
            return result
        if result is None:
            if not route.ref:
                return None
            result = ok([])
        elif not (isinstance(result, tuple) and result and isinstance(result[0], Atom)):
            result = ok(result)
        return result + route.ref

    def _encode_reply(self, ctx: Context, term: Any, label: str) -> str:
        try:
            return ctx.encode(term)
        except Exception as exc:
            cid = secrets.token_hex(4)
            reason = exc.reason if isinstance(exc, EncodeError) else type(exc).__name__
            logger.error(
                "stream handler %s returned a reply the page cannot take (%s) [%s]",
                label,
                reason,
                cid,
                exc_info=not isinstance(exc, EncodeError),
            )
            raise _ErrorReply("bad_reply", cid) from None

    def _encode_error(self, reason: str, detail: str, ref: tuple[Any, ...]) -> str | None:
        """``{error, Reason, Detail}``, plus the Ref of a Ref-bearing sync call."""
        try:
            return self.codec.encode((_ERROR, Atom(reason), detail, *ref))
        except Exception:  # only a broken codec gets here: the Ref was checked
            logger.error("cannot encode the error reply %s", reason, exc_info=True)
            return None


def _bind_method(fallback: Callable[..., Any], method: str) -> Callable[..., Any]:
    """``sync(ctx, method, props)`` seen as ``method(ctx, props)`` for one fixed method."""

    def call(ctx: Context, props: Any) -> Any:
        return fallback(ctx, method, props)

    return call


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class StreamHandler(Handler):
    """The per-session Handler a Router builds: decodes, routes, encodes.

    The Connection runs its callbacks one at a time per session, so replies
    keep the order of the messages that caused them.
    """

    # The router bounds each action with its own timeout and answers
    # {error, timeout, _}: the connection adds no second timer to on_message.
    bounds_its_calls = True

    def __init__(self, router: Router) -> None:
        self.router = router
        self.ctx: Context | None = None

    def _context(self, conn: Connection) -> Context:
        if self.ctx is None:
            self.ctx = self.router.new_context(conn)
        return self.ctx

    async def on_open(self, conn: Connection) -> None:
        ctx = self._context(conn)
        for hook in self.router._on_open:
            await _maybe_await(hook(ctx))

    async def on_message(self, conn: Connection, message: str) -> str | None:
        return await self.router.dispatch(self._context(conn), message)

    async def on_info(self, conn: Connection, info: Any) -> str | None:
        ctx = self._context(conn)
        hook = self.router._on_info
        term = info if hook is None else await _maybe_await(hook(ctx, info))
        if term is None:
            return None
        try:
            return ctx.encode(term)
        except Exception as exc:
            reason = exc.reason if isinstance(exc, EncodeError) else type(exc).__name__
            logger.error("on_info: cannot encode the push (%s); nothing sent", reason)
            return None

    async def on_close(self, conn: Connection) -> None:
        ctx = self._context(conn)
        for hook in self.router._on_close:
            await _maybe_await(hook(ctx))
