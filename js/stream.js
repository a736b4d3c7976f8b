/*
 * stream.js - the page's Stream: a Bullet connection plus BERT actions and
 * Backbone-style events (docs/protocol.md §4).
 *
 *     var Stream = BulletStream("ws://host/bullet", options);
 *     Stream.on("message:sync", function (msg) { msg[1]; msg[2]; });
 *     Stream.action("sync", Bert.tuple(Bert.atom("read"), Bert.atom("character"), []));
 *
 * The connection comes from $.bullet(url, options) when jQuery has one, else
 * from the global bullet(url, options); terms are built with the global Bert.
 * Works with this project's bullet.js / bert.js and with the original
 * Bullet client and BERT-JS (2012 or 2016 line): it only uses Bert.atom,
 * Bert.tuple, Bert.encode, Bert.decode and the send/close/setURL/on* API.
 *
 * Browser: defines the global `BulletStream`. Node/CommonJS: module.exports.
 */
(function (root, factory) {
    "use strict";
    var BulletStream = factory(root);
    if (typeof module === "object" && module && module.exports) {
        module.exports = BulletStream;
    } else {
        root.BulletStream = BulletStream;
    }
}(typeof self !== "undefined" ? self : (typeof globalThis !== "undefined" ? globalThis : this), function (root) {
    "use strict";

    var CALLBACKS = {
        onopen: "open", onclose: "close", ondisconnect: "disconnect", onheartbeat: "heartbeat",
        onreset: "reset"
    };

    function typeName(x) {
        return (x && typeof x === "object" && typeof x.type === "string") ? x.type.toLowerCase() : "";
    }
    /* BERT-JS terms: atoms {type: "Atom", value}, tuples {type: "Tuple",
       length, value: [...], 0: .., 1: ..}. 2012-line atoms true/false carry
       the JS booleans as value. */
    function isAtom(x) { return typeName(x) === "atom" && "value" in x; }
    function isTuple(x) { return typeName(x) === "tuple" && typeof x.length === "number"; }

    /* Make sure msg[i] works even for a tuple type that only has .value. */
    function indexable(t) {
        var i;
        if (t.length > 0 && !(0 in t) && t.value && typeof t.value.length === "number") {
            for (i = 0; i < t.length; i++) { t[i] = t.value[i]; }
        }
        return t;
    }

    /* Errors thrown by page listeners go here: rethrown on their own stack
       by default (they show in the console), replaceable by the page. */
    function rethrowLater(err) {
        BulletStream.reportError(err);
    }

    /* ---- Backbone-style events ---- */

    function Events() {}
    Events.prototype._add = function (names, fn, ctx, once) {
        var list, i;
        if (typeof fn !== "function") { return this; }
        this._events = this._events || {};
        names = String(names).split(/\s+/);
        for (i = 0; i < names.length; i++) {
            if (!names[i]) { continue; }
            list = this._events[names[i]] || (this._events[names[i]] = []);
            list.push({fn: fn, ctx: ctx, once: once});
        }
        return this;
    };
    Events.prototype.on = function (names, fn, ctx) { return this._add(names, fn, ctx, false); };
    Events.prototype.once = function (names, fn, ctx) { return this._add(names, fn, ctx, true); };
    Events.prototype.off = function (names, fn, ctx) {
        var all, i, j, kept, list;
        if (!this._events) { return this; }
        if (names == null && fn == null && ctx == null) {
            this._events = {};
            return this;
        }
        all = names == null ? Object.keys(this._events) : String(names).split(/\s+/);
        for (i = 0; i < all.length; i++) {
            list = this._events[all[i]];
            if (!list) { continue; }
            kept = [];
            for (j = 0; j < list.length; j++) {
                if ((fn != null && list[j].fn !== fn) || (ctx != null && list[j].ctx !== ctx)) {
                    kept.push(list[j]);
                }
            }
            if (kept.length) { this._events[all[i]] = kept; } else { delete this._events[all[i]]; }
        }
        return this;
    };
    Events.prototype.trigger = function (name) {
        var args = Array.prototype.slice.call(arguments, 1);
        this._fire(name, args);
        if (name !== "all") { this._fire("all", [name].concat(args)); }
        return this;
    };
    Events.prototype._fire = function (name, args) {
        var list = this._events && this._events[name], copy, i, j, e;
        if (!list) { return; }
        copy = list.slice();
        for (i = 0; i < copy.length; i++) {
            e = copy[i];
            if (e.once) {
                list = this._events[name];
                j = list ? list.indexOf(e) : -1;
                if (j < 0) { continue; }   /* already fired by a nested trigger */
                list.splice(j, 1);
                if (!list.length) { delete this._events[name]; }
            }
            /* One failing listener must not starve the others (nor the
               connection): its error is rethrown on its own stack. */
            try {
                e.fn.apply(e.ctx === undefined ? this : e.ctx, args);
            } catch (err) {
                rethrowLater(err);
            }
        }
    };

    /* ---- the Stream ---- */

    function BulletStream(url, options) {
        var jq = root.jQuery || root.$;
        var conn, stream;

        if (jq && typeof jq.bullet === "function") {
            conn = jq.bullet(url, options);
        } else if (typeof root.bullet === "function") {
            conn = root.bullet(url, options);
        } else {
            throw new Error("BulletStream: load bullet.js (or jQuery's $.bullet) first");
        }

        stream = new Events();
        stream.connection = conn;
        stream.onopen = null;
        stream.onclose = null;
        stream.ondisconnect = null;
        stream.onheartbeat = null;
        stream.onreset = null;
        stream.onmessage = null;

        stream.send = function (data) { return conn.send(data); };
        stream.close = function () { return conn.close(); };
        stream.setURL = function (u) { return conn.setURL(u); };

        /* Send {Name, Msg} as BERT; returns what the connection's send returned. */
        stream.action = function (name, msg) {
            var Bert = root.Bert;
            return conn.send(Bert.encode(Bert.tuple(Bert.atom(name), msg)));
        };

        /* Keep onopen/onclose/ondisconnect/onheartbeat/onreset usable on the
           Stream, and trigger them as events too ("reset" with its info). */
        Object.keys(CALLBACKS).forEach(function (cb) {
            conn[cb] = function (info) {
                var fn = stream[cb];
                if (typeof fn === "function") {
                    try { fn.apply(stream, arguments); } catch (err) { rethrowLater(err); }
                }
                if (cb === "onreset") {
                    stream.trigger(CALLBACKS[cb], info);
                } else {
                    stream.trigger(CALLBACKS[cb]);
                }
            };
        });

        conn.onmessage = function (e) {
            var data = e && e.data, msg, tag;
            if (typeof stream.onmessage === "function") {
                try { stream.onmessage(e); } catch (err) { rethrowLater(err); }
            }
            try {
                msg = root.Bert.decode(data);
            } catch (err) {
                stream.trigger("undecodable", data, err);
                return;
            }
            if (isTuple(msg) && msg.length > 0) {
                indexable(msg);
                if (isAtom(msg[0])) {
                    tag = String(msg[0].value);
                    stream.trigger("message:" + tag, msg);
                }
            }
            stream.trigger("message", msg);
        };

        return stream;
    }

    BulletStream.Events = Events;
    BulletStream.reportError = function (err) {
        root.setTimeout(function () { throw err; }, 0);
    };
    return BulletStream;
}));
