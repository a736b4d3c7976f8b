/*
 * backbone-bullet.js - Backbone models over a BulletStream (docs/protocol.md §4).
 *
 *     BulletBackbone.install(Stream);                // the seed's Backbone.sync
 *     BulletBackbone.install(Stream, {refs: true});  // + success/error callbacks
 *
 * Default: Backbone.sync sends exactly what the seed's code sends,
 * {sync, {Method, Model, Props}}, and never calls options.success: a reply
 * {sync, ok, Props} cannot be told apart from a broadcast of the same shape.
 * Pages keep updating models from Stream.on("message:sync", ...).
 *
 * {refs: true}: sends {sync, {Method, Model, Props, Ref}} (Ref an integer);
 * a bullet_py server answers {sync, ok, Props, Ref} / {sync, error, Reason, Ref},
 * which resolves exactly that call. Broadcasts carry no Ref and resolve nothing.
 *
 * Also: BulletBackbone.to_proplist(model), installed as
 * Backbone.Model.prototype.to_proplist when Backbone is loaded and the page
 * has not defined its own; BulletBackbone.from_proplist(list).
 *
 * Browser: defines the global `BulletBackbone`. Node/CommonJS: module.exports.
 */
(function (root, factory) {
    "use strict";
    var api = factory(root);
    if (typeof module === "object" && module && module.exports) {
        module.exports = api;
    } else {
        root.BulletBackbone = api;
    }
    api.installProplist(root.Backbone);
}(typeof self !== "undefined" ? self : (typeof globalThis !== "undefined" ? globalThis : this), function (root) {
    "use strict";

    var REF_MAX = 134217727;   /* 2^27-1: refs stay plain BERT integers (98) */

    function typeName(x) {
        return (x && typeof x === "object" && typeof x.type === "string") ? x.type.toLowerCase() : "";
    }
    function item(t, i) { return (i in t || !t.value) ? t[i] : t.value[i]; }

    /* model.attributes -> [{atom(Key), Value}]; undefined values and functions are skipped. */
    function to_proplist(model) {
        var Bert = root.Bert, attrs = (model && model.attributes) || model || {}, out = [];
        Object.keys(attrs).forEach(function (k) {
            var v = attrs[k];
            if (v !== undefined && typeof v !== "function") {
                out.push(Bert.tuple(Bert.atom(k), v));
            }
        });
        return out;
    }

    /* [{Key, Value}] with atom or string keys -> {Key: Value}; anything else is returned as is. */
    function from_proplist(list) {
        var obj = {}, i, pair, key;
        if (!Array.isArray(list)) { return list; }
        for (i = 0; i < list.length; i++) {
            pair = list[i];
            if (typeName(pair) !== "tuple" || pair.length !== 2) { return list; }
            key = item(pair, 0);
            if (typeName(key) === "atom") {
                key = String(key.value);
            } else if (typeof key !== "string") {
                return list;
            }
            obj[key] = item(pair, 1);
        }
        return obj;
    }

    function installProplist(Backbone) {
        if (Backbone && Backbone.Model && !Backbone.Model.prototype.to_proplist) {
            Backbone.Model.prototype.to_proplist = function () { return to_proplist(this); };
        }
    }

    function install(Stream, opts) {
        var Backbone, Bert, pending = {}, nextRef, timeout, setTimer, clearTimer, sync;
        opts = opts || {};
        Backbone = opts.Backbone || root.Backbone;
        if (!Backbone) { throw new Error("BulletBackbone.install: Backbone is not loaded"); }
        installProplist(Backbone);

        if (!opts.refs) {
            /* Wire-identical to the seed. */
            sync = function (method, model, options) {
                var mname, msg, props, sent;
                Bert = root.Bert;
                mname = Bert.atom(model.name);
                props = model.to_proplist();
                msg = Bert.tuple(Bert.atom(method), mname, props);
                sent = Stream.action("sync", msg);
                /* Only a definite local failure is reported: nothing was sent. */
                if (sent === false && options && typeof options.error === "function") {
                    options.error("not_sent");
                }
                return sent;
            };
            Backbone.sync = sync;
            return sync;
        }

        timeout = typeof opts.timeout === "number" ? opts.timeout : 30000;
        setTimer = opts.setTimeout || function (fn, ms) { return root.setTimeout(fn, ms); };
        clearTimer = opts.clearTimeout || function (id) { root.clearTimeout(id); };
        /* A random start keeps refs of two tabs sharing one session apart. */
        nextRef = 1 + Math.floor(Math.random() * (REF_MAX >> 1));

        function settle(ref, ok, value) {
            var p = pending[ref], cb;
            if (!p) { return; }
            delete pending[ref];
            if (p.timer !== null) { clearTimer(p.timer); }
            cb = ok ? p.options.success : p.options.error;
            if (typeof cb === "function") { cb(value); }
        }

        Stream.on("message:sync", function (msg) {
            var ref, status;
            if (msg.length !== 4) { return; }               /* a broadcast (or a 3-tuple reply) */
            ref = item(msg, 3);
            if (typeof ref !== "number" || !pending.hasOwnProperty(ref)) { return; }
            status = item(msg, 1);
            status = typeName(status) === "atom" ? String(status.value) : String(status);
            if (status === "ok") {
                settle(ref, true, from_proplist(item(msg, 2)));
            } else {
                settle(ref, false, item(msg, 2));
            }
        });

        /* The server's own errors for a call with a Ref: {error, Reason, Detail, Ref}. */
        Stream.on("message:error", function (msg) {
            var ref, reason;
            if (msg.length !== 4) { return; }
            ref = item(msg, 3);
            if (typeof ref !== "number" || !pending.hasOwnProperty(ref)) { return; }
            reason = item(msg, 1);
            settle(ref, false, typeName(reason) === "atom" ? String(reason.value) : reason);
        });

        sync = function (method, model, options) {
            var ref = nextRef, msg, sent, p;
            Bert = root.Bert;
            nextRef = nextRef >= REF_MAX ? 1 : nextRef + 1;
            p = {options: options || {}, timer: null};
            /* Registered before sending: the original client's synchronous
               POST delivers the reply before send() returns. */
            pending[ref] = p;
            msg = Bert.tuple(Bert.atom(method), Bert.atom(model.name), model.to_proplist(), ref);
            sent = Stream.action("sync", msg);
            if (sent === false) {
                settle(ref, false, "not_sent");
            } else if (pending[ref] === p && timeout > 0) {
                p.timer = setTimer(function () { p.timer = null; settle(ref, false, "timeout"); }, timeout);
            }
            return sent;
        };
        Backbone.sync = sync;
        return sync;
    }

    return {
        to_proplist: to_proplist,
        from_proplist: from_proplist,
        install: install,
        installProplist: installProplist
    };
}));
