/*
 * A raw Bullet connection for the browser tests, recorded in window.T.
 *
 * Query: t=auto|websocket|eventsource|xhrPolling (the transport forced with the
 * client's own options; auto lets the client choose), path=/bullet.
 * Uses $.bullet when jQuery is loaded (before bullet.js), else the global bullet.
 */
(function () {
    "use strict";
    var FORCE = {
        auto: {},
        websocket: {},
        eventsource: {disableWebSocket: true},
        xhrPolling: {disableWebSocket: true, disableEventSource: true}
    };
    var params = new URLSearchParams(location.search);
    var want = params.get("t") || "auto";
    var url = "ws://" + location.host + (params.get("path") || "/bullet");
    var jq = window.jQuery;
    var viaJQuery = !!(jq && typeof jq.bullet === "function");
    var make = viaJQuery ? jq.bullet : window.bullet;

    var T = window.T = {
        via: viaJQuery ? "jQuery " + jq.fn.jquery : "bullet",
        opens: 0,
        transports: [],     /* conn.transport at each onopen */
        disconnects: 0,
        messages: [],
        resets: []          /* onreset's info, with at: T.messages.length then */
    };

    var conn = T.conn = make(url, FORCE[want]);
    conn.onopen = function () {
        T.opens++;
        T.transports.push(conn.transport);
    };
    conn.onmessage = function (e) { T.messages.push(e.data); };
    conn.ondisconnect = function () { T.disconnects++; };
    conn.onreset = function (info) {
        T.resets.push({received: info.received, transport: info.transport, at: T.messages.length});
    };

    /* Send each message in turn; returns what send() returned for each. */
    T.sendAll = function (list) {
        return list.map(function (m) { return conn.send(m); });
    };
}());
