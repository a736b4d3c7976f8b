/*
 * bullet.js - browser client for a Bullet endpoint (bullet_py or Erlang Bullet).
 *
 * One URL, three transports tried in order: WebSocket, EventSource, XHR
 * long-polling (docs/protocol.md §1). Same API as Bullet's own client:
 *
 *     var conn = $.bullet("ws://host/bullet", options);   // with jQuery
 *     var conn = bullet("ws://host/bullet", options);     // without
 *     conn.onopen = conn.onmessage = conn.onclose =
 *         conn.ondisconnect = conn.onheartbeat = conn.onreset = function (e) {...};
 *     conn.send(text); conn.close(); conn.setURL(url);
 *
 * It counts the messages it received in its session and reports the count
 * when it reconnects, so a server that keeps sessions (bullet_py) resends
 * what a dropped connection lost; onreset says when the session was
 * replaced by a fresh one instead (see js/README.md, "Resuming").
 *
 * Options: disableWebSocket, disableEventSource, disableXHRPolling,
 * queueLimit (default 1000), postTimeout (ms, default 60000), tabId; and,
 * for tests, WebSocket, EventSource, XMLHttpRequest, setTimeout, clearTimeout
 * (default: the globals). See js/README.md.
 *
 * Browser: defines the global `bullet` and, if jQuery is loaded, `$.bullet`.
 * Node/CommonJS: module.exports = bullet.
 */
(function (root, factory) {
    "use strict";
    var bullet = factory(root);
    if (typeof module === "object" && module && module.exports) {
        module.exports = bullet;
    } else {
        root.bullet = bullet;
        if (root.jQuery) { root.jQuery.bullet = bullet; }
    }
}(typeof self !== "undefined" ? self : (typeof globalThis !== "undefined" ? globalThis : this), function (root) {
    "use strict";

    var CONNECTING = 0, OPEN = 1, CLOSED = 3;
    var DELAY_MIN = 80;          /* first reconnect delay, ms */
    var DELAY_MAX = 10000;       /* reconnect delay cap, ms */
    var RESTART_DELAY = 10000;   /* after every transport failed, ms */
    var HEARTBEAT = 20000;       /* onheartbeat period on WebSocket, ms */
    var POLL_GAP = 100;          /* next poll GET after an answer, ms */
    var QUEUE_LIMIT = 1000;      /* messages held while not connected */
    var POST_TIMEOUT = 60000;    /* a POST unanswered this long is given up */
    var TRANSPORTS = ["websocket", "eventsource", "xhrPolling"];
    var FORM_TYPE = "application/x-www-form-urlencoded; charset=UTF-8";
    /* WebSocket subprotocols offered; the server picks the one that says
       whether the connection resumed the session or started a fresh one. */
    var RESUMED = "bullet.resumed", FRESH = "bullet.fresh";
    var SESSION_HEADER = "X-Bullet-Session";   /* "fresh" on a poll answer */

    function noop() {}

    function isWsURL(url) { return /^wss?:/i.test(url); }
    function httpURL(url) { return String(url).replace(/^ws(s?):/i, "http$1:"); }

    function randomId() {
        var bytes = [], s = "", i, c = root.crypto;
        if (c && typeof c.getRandomValues === "function") {
            bytes = c.getRandomValues(new Uint8Array(16));
        } else {
            for (i = 0; i < 16; i++) { bytes.push(Math.floor(Math.random() * 256)); }
        }
        for (i = 0; i < bytes.length; i++) { s += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16); }
        return s;
    }

    function nextDelay(ms) { return Math.min(ms * 2, DELAY_MAX); }

    /* WebSocket and EventSource cannot send headers: the tab id and the
       count travel in the query. */
    function withQuery(url, query) {
        var hash = "", i = url.indexOf("#");
        if (i >= 0) { hash = url.slice(i); url = url.slice(0, i); }
        return url + (url.indexOf("?") >= 0 ? "&" : "?") + query + hash;
    }

    function bullet(url, options) {
        options = options || {};

        function env(name) { return (name in options) ? options[name] : root[name]; }
        var WebSocketImpl = env("WebSocket");
        var EventSourceImpl = env("EventSource");
        var XHRImpl = env("XMLHttpRequest");
        var setTimer = options.setTimeout || function (fn, ms) { return root.setTimeout(fn, ms); };
        var clearTimer = options.clearTimeout || function (id) { root.clearTimeout(id); };
        var queueLimit = typeof options.queueLimit === "number" ? options.queueLimit : QUEUE_LIMIT;
        var postTimeout = typeof options.postTimeout === "number" ? options.postTimeout : POST_TIMEOUT;
        var tabId = options.tabId || randomId();

        var self = {
            onopen: noop,
            onmessage: noop,
            onclose: noop,
            ondisconnect: noop,
            onheartbeat: noop,
            onreset: noop
        };

        var state = CONNECTING;   /* bullet-level: CONNECTING (or waiting), OPEN, CLOSED */
        var tn = 0;               /* index of the current transport in TRANSPORTS */
        var delay = DELAY_MIN;
        var attempt = null;       /* the current transport connection */
        var retryTimer = null;
        var heartbeatTimer = null;
        var outbox = [];          /* messages not yet handed to a transport */
        var posting = false;      /* one POST in flight at most */
        var lastStamp = 0;
        var starting = true;
        var seen = 0;             /* messages received in the current session */

        /* Call a page callback; an exception in it must not break the
           transport, so it is rethrown on its own stack. */
        function call(fn, arg) {
            if (typeof fn !== "function") { return; }
            try {
                fn.call(self, arg);
            } catch (err) {
                setTimer(function () { throw err; }, 0);
            }
        }

        function usable(name) {
            switch (name) {
            case "websocket":
                return !options.disableWebSocket && !!WebSocketImpl && isWsURL(url);
            case "eventsource":
                return !options.disableEventSource && !!EventSourceImpl;
            default:
                return !options.disableXHRPolling && !!XHRImpl;
            }
        }

        function setHeaders(xhr, contentType) {
            if (contentType) { xhr.setRequestHeader("Content-Type", contentType); }
            xhr.setRequestHeader("Accept", "text/plain, */*; q=0.01");
            xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
            xhr.setRequestHeader("X-Socket-Transport", "xhrPolling");
            xhr.setRequestHeader("X-Bullet-Tab", tabId);
        }

        function streamQuery() {
            return "bullet_tab=" + tabId + "&bullet_seen=" + seen;
        }

        /* ---- transports: each takes handlers {open, message, counted,
           session, close} and returns {send, writable, close}; close() is
           silent (no events). ---- */

        var factories = {
            websocket: function (h) {
                var ws = new WebSocketImpl(withQuery(url, streamQuery()), [RESUMED, FRESH]);
                ws.onopen = function () {
                    h.session(ws.protocol === FRESH);
                    h.open();
                };
                ws.onmessage = function (e) { h.message(e.data); };
                ws.onclose = ws.onerror = function () { h.close(); };
                return {
                    writable: function () { return ws.readyState === 1; },
                    send: function (data) { ws.send(data); },
                    close: function () {
                        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
                        try { ws.close(); } catch (ignore) {}
                    }
                };
            },

            eventsource: function (h) {
                var es = new EventSourceImpl(withQuery(httpURL(url), streamQuery()));
                /* The server's first event, before any message: "fresh" or "resumed". */
                function onSession(e) { h.session(e.data === "fresh"); }
                function detach() {
                    es.onopen = es.onmessage = es.onerror = null;
                    es.removeEventListener("bullet", onSession);
                    es.close();
                }
                es.addEventListener("bullet", onSession);
                es.onopen = function () { h.open(); };
                es.onmessage = function (e) { h.message(e.data); };
                es.onerror = function () {
                    /* Reconnection is ours (with backoff), not the browser's. */
                    detach();
                    h.close();
                };
                return {close: detach};
            },

            xhrPolling: function (h) {
                var closed = false, xhr = null, timer = null;

                function stamp() {
                    var t = Date.now();
                    lastStamp = t > lastStamp ? t : lastStamp + 1;
                    return lastStamp;
                }

                function poll() {
                    var u = httpURL(url), x = new XHRImpl();
                    timer = null;
                    xhr = x;
                    u += (u.indexOf("?") < 0 ? "?" : "&") + "_=" + stamp();
                    x.open("GET", u, true);
                    setHeaders(x, null);
                    x.setRequestHeader("X-Bullet-Seen", String(seen));
                    x.onreadystatechange = function () {
                        if (x.readyState !== 4 || closed) { return; }
                        x.onreadystatechange = null;
                        xhr = null;
                        if (x.status >= 200 && x.status < 300) {
                            h.session(x.getResponseHeader(SESSION_HEADER) === "fresh");
                            h.open();
                            /* No BOM stripping here: XHR's UTF-8 decoding already
                               dropped one leading U+FEFF (the server doubles it). */
                            if (!closed && x.responseText) {
                                h.message(x.responseText);
                            } else if (!closed && x.status === 200) {
                                h.counted();   /* an answer, if an empty one */
                            }
                            if (!closed) { timer = setTimer(poll, POLL_GAP); }
                        } else {
                            closed = true;
                            h.close();
                        }
                    };
                    x.send(null);
                }

                poll();
                return {
                    close: function () {
                        closed = true;
                        if (timer !== null) { clearTimer(timer); timer = null; }
                        if (xhr) {
                            xhr.onreadystatechange = null;
                            try { xhr.abort(); } catch (ignore) {}
                            xhr = null;
                        }
                    }
                };
            }
        };

        /* ---- sending: the outbox is drained in order, one POST at a time ---- */

        function post(data) {
            var x = new XHRImpl();
            posting = true;
            x.open("POST", httpURL(url), true);
            x.timeout = postTimeout;
            setHeaders(x, FORM_TYPE);
            x.onreadystatechange = function () {
                if (x.readyState !== 4) { return; }
                x.onreadystatechange = null;
                posting = false;
                /* A failed POST is dropped, as with the original client: the
                   server may have handled it, so a retry could duplicate it. */
                if (state !== CLOSED && x.status >= 200 && x.status < 300 && x.responseText) {
                    call(self.onmessage, {data: x.responseText});
                }
                flush();
            };
            try {
                x.send(data);
            } catch (err) {
                x.onreadystatechange = null;
                posting = false;
                setTimer(flush, 0);
            }
        }

        function flush() {
            var a = attempt;
            if (posting || state !== OPEN || !a || !a.opened) { return; }
            if (a.name === "websocket") {
                while (outbox.length && attempt === a && a.impl.writable()) {
                    a.impl.send(outbox.shift());
                }
            } else if (outbox.length) {
                post(outbox.shift());
            }
        }

        /* ---- connection state machine ---- */

        function startHeartbeat() {
            heartbeatTimer = setTimer(function beat() {
                heartbeatTimer = setTimer(beat, HEARTBEAT);
                call(self.onheartbeat);
            }, HEARTBEAT);
        }

        function stopHeartbeat() {
            if (heartbeatTimer !== null) { clearTimer(heartbeatTimer); heartbeatTimer = null; }
        }

        function schedule(fn, ms) {
            retryTimer = setTimer(function () { retryTimer = null; fn(); }, ms);
        }

        function backoff() {
            var wait = delay;
            delay = nextDelay(delay);
            return wait;
        }

        function disconnect() {
            tn = 0;
            delay = DELAY_MIN;
            schedule(connect, RESTART_DELAY);
            if (starting) {
                setTimer(function () { if (state !== CLOSED) { call(self.ondisconnect); } }, 0);
            } else {
                call(self.ondisconnect);
            }
        }

        function transportOpened(a) {
            delay = DELAY_MIN;
            state = OPEN;
            if (a.name === "websocket") { startHeartbeat(); }
            flush();    /* messages queued earlier go before anything onopen sends */
            call(self.onopen);
        }

        function transportClosed(a) {
            attempt = null;
            stopHeartbeat();
            if (state === CLOSED) { return; }
            state = CONNECTING;
            if (!a.opened) {
                /* Closed before it ever opened: move down to the next transport. */
                tn++;
                while (tn < TRANSPORTS.length && !usable(TRANSPORTS[tn])) { tn++; }
                if (tn >= TRANSPORTS.length) {
                    disconnect();
                    return;
                }
            }
            schedule(connect, backoff());
        }

        function connect() {
            var a, h;
            while (tn < TRANSPORTS.length && !usable(TRANSPORTS[tn])) { tn++; }
            if (tn >= TRANSPORTS.length) {
                disconnect();
                return;
            }
            a = {name: TRANSPORTS[tn], opened: false, done: false, impl: null};
            h = {
                open: function () {
                    if (attempt !== a || a.done || a.opened) { return; }
                    a.opened = true;
                    transportOpened(a);
                },
                message: function (data) {
                    if (attempt !== a || a.done) { return; }
                    seen++;
                    call(self.onmessage, {data: data});
                },
                counted: function () {
                    if (attempt !== a || a.done) { return; }
                    seen++;
                },
                /* The server said whether this connection continues the
                   session (fresh = false) or starts a new one. A new one after
                   messages were received is a gap the page must hear of. */
                session: function (fresh) {
                    var received = seen;
                    if (attempt !== a || a.done || !fresh) { return; }
                    seen = 0;
                    if (received > 0) {
                        call(self.onreset, {received: received, transport: a.name});
                    }
                },
                close: function () {
                    if (attempt !== a || a.done) { return; }
                    a.done = true;
                    transportClosed(a);
                }
            };
            attempt = a;
            try {
                a.impl = factories[a.name](h);
            } catch (err) {
                /* e.g. a URL the WebSocket constructor refuses */
                a.impl = {close: noop};
                setTimer(h.close, 0);
            }
        }

        /* ---- public API ---- */

        self.send = function (data) {
            if (state === CLOSED || outbox.length >= queueLimit) { return false; }
            outbox.push(data);
            flush();
            return true;
        };

        self.close = function () {
            var a = attempt;
            if (state === CLOSED) { return; }
            state = CLOSED;
            attempt = null;
            outbox = [];
            stopHeartbeat();
            if (retryTimer !== null) { clearTimer(retryTimer); retryTimer = null; }
            if (a) {
                a.done = true;
                if (a.impl) { a.impl.close(); }
            }
            call(self.onclose);
        };

        self.setURL = function (newURL) {
            url = newURL;
        };

        /* Read-only views, for pages and tests. */
        Object.defineProperty(self, "readyState", {
            get: function () { return state; }
        });
        Object.defineProperty(self, "transport", {
            get: function () { return attempt && attempt.opened ? attempt.name : null; }
        });
        Object.defineProperty(self, "tabId", {
            get: function () { return tabId; }
        });
        Object.defineProperty(self, "seen", {
            get: function () { return seen; }
        });

        connect();
        starting = false;
        return self;
    }

    bullet.CONNECTING = CONNECTING;
    bullet.OPEN = OPEN;
    bullet.CLOSED = CLOSED;
    bullet.nextDelay = nextDelay;
    return bullet;
}));
