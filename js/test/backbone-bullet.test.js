"use strict";
/* backbone-bullet.js: to_proplist, the seed-identical Backbone.sync, and
   exact reply matching with refs. Backbone itself is a small stand-in. */
const test = require("node:test");
const assert = require("node:assert/strict");
const Bert = require("../bert.js");
const BulletStream = require("../stream.js");

globalThis.Bert = Bert;
const BulletBackbone = require("../backbone-bullet.js");

class Clock {
    constructor() { this.now = 0; this.seq = 0; this.timers = new Map(); }
    setTimeout = (fn, ms) => { const id = ++this.seq; this.timers.set(id, { at: this.now + ms, fn }); return id; };
    clearTimeout = (id) => { this.timers.delete(id); };
    tick(ms) {
        this.now += ms;
        for (const [id, t] of [...this.timers].sort((a, b) => a[1].at - b[1].at)) {
            if (t.at <= this.now && this.timers.has(id)) { this.timers.delete(id); t.fn(); }
        }
    }
}

function fakeBackbone() {
    function Model(name, attrs) { this.name = name; this.attributes = attrs; }
    return { Model, sync: null };
}

/* A Stream over a fake connection; `reply` lets a test answer synchronously. */
function makeStream() {
    const conn = {
        sent: [], result: true, reply: null,
        send(d) { this.sent.push(d); if (this.reply) this.reply(d); return this.result; },
        close() {}, setURL() {},
    };
    const saved = globalThis.bullet;
    globalThis.bullet = () => conn;
    try {
        return { stream: BulletStream("ws://h/b"), conn };
    } finally {
        globalThis.bullet = saved;
    }
}

const deliver = (conn, term) => conn.onmessage({ data: Bert.encode(term) });
const A = Bert.atom;
const T = Bert.tuple;

test("to_proplist turns model.attributes into [{atom(Key), Value}]", () => {
    const model = { attributes: { id: 1, name: "Zoë", hp: 42, alive: true, gone: undefined } };
    const props = BulletBackbone.to_proplist(model);
    assert.equal(Bert.encode(props),
        Bert.encode([T(A("id"), 1), T(A("name"), "Zoë"), T(A("hp"), 42), T(A("alive"), true)]));
});

test("from_proplist turns a proplist back into an object, leaves anything else alone", () => {
    assert.deepEqual(BulletBackbone.from_proplist([T(A("id"), 1), T(A("name"), "Zoë")]), { id: 1, name: "Zoë" });
    assert.deepEqual(BulletBackbone.from_proplist([]), {});
    const notProps = [1, 2];
    assert.equal(BulletBackbone.from_proplist(notProps), notProps);
    assert.equal(BulletBackbone.from_proplist("text"), "text");
});

test("install puts to_proplist on Backbone.Model.prototype unless the page has one", () => {
    const Backbone = fakeBackbone();
    const { stream } = makeStream();
    BulletBackbone.install(stream, { Backbone });
    const m = new Backbone.Model("character", { id: 7 });
    assert.equal(Bert.encode(m.to_proplist()), Bert.encode([T(A("id"), 7)]));

    const Backbone2 = fakeBackbone();
    const own = function () { return ["own"]; };
    Backbone2.Model.prototype.to_proplist = own;
    BulletBackbone.install(stream, { Backbone: Backbone2 });
    assert.equal(Backbone2.Model.prototype.to_proplist, own);
});

test("default install: Backbone.sync is wire-identical to the seed and never mistakes a broadcast for a reply", () => {
    const Backbone = fakeBackbone();
    const { stream, conn } = makeStream();
    const sync = BulletBackbone.install(stream, { Backbone });
    assert.equal(Backbone.sync, sync);

    /* the seed's code, verbatim */
    const Stream = stream;
    const seedSync = function (method, model, options) {
        var mname, msg, props;
        mname = Bert.atom(model.name);
        props = model.to_proplist();
        msg = Bert.tuple(Bert.atom(method), mname, props);
        return Stream.action("sync", msg);
    };
    const model = new Backbone.Model("character", { id: 1, name: "Zoë", hp: 42, alive: true });
    const calls = [];
    const options = { success: (r) => calls.push(["success", r]), error: (r) => calls.push(["error", r]) };
    assert.equal(Backbone.sync("update", model, options), true);
    assert.equal(seedSync("update", model, {}), true);
    assert.equal(conn.sent.length, 2);
    assert.equal(conn.sent[0], conn.sent[1]);
    assert.deepEqual(Array.from(conn.sent[0], (c) => c.charCodeAt(0)).slice(0, 8), [131, 104, 2, 100, 0, 4, 115, 121]);

    deliver(conn, T(A("sync"), A("ok"), [T(A("id"), 1)]));
    assert.deepEqual(calls, [], "a {sync, ok, Props} might be a broadcast: not taken as the reply");

    conn.result = false;
    assert.equal(Backbone.sync("update", model, options), false);
    assert.deepEqual(calls, [["error", "not_sent"]]);
});

test("refs: sends {Method, Model, Props, Ref} and resolves exactly the call the Ref names", () => {
    const Backbone = fakeBackbone();
    const clock = new Clock();
    const { stream, conn } = makeStream();
    BulletBackbone.install(stream, { Backbone, refs: true, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout });
    const calls = [];
    const opts = (tag) => ({ success: (r) => calls.push([tag, "success", r]), error: (r) => calls.push([tag, "error", r]) });
    const m = new Backbone.Model("character", { id: 1, hp: 42 });

    assert.equal(Backbone.sync("update", m, opts("a")), true);
    assert.equal(Backbone.sync("read", m, opts("b")), true);
    const sentA = Bert.decode(conn.sent[0]);
    const sentB = Bert.decode(conn.sent[1]);
    assert.equal(String(sentA[0]), "sync");
    assert.equal(sentA[1].length, 4);
    assert.equal(String(sentA[1][0]), "update");
    assert.equal(String(sentA[1][1]), "character");
    assert.equal(Bert.encode(sentA[1][2]), Bert.encode([T(A("id"), 1), T(A("hp"), 42)]));
    const refA = sentA[1][3];
    const refB = sentB[1][3];
    assert.ok(Number.isInteger(refA) && refA > 0 && refA <= 134217727);
    assert.equal(refB, refA + 1);

    deliver(conn, T(A("sync"), A("ok"), [T(A("hp"), 1)]));                 // broadcast: no Ref
    deliver(conn, T(A("sync"), A("ok"), [T(A("hp"), 2)], refA + 1000));   // not ours
    assert.deepEqual(calls, []);

    deliver(conn, T(A("sync"), A("ok"), [T(A("id"), 1), T(A("hp"), 9)], refB));   // out of order
    deliver(conn, T(A("sync"), A("error"), A("stale"), refA));
    assert.equal(calls.length, 2);
    assert.deepEqual(calls[0], ["b", "success", { id: 1, hp: 9 }]);
    assert.equal(calls[1][0], "a");
    assert.equal(calls[1][1], "error");
    assert.equal(String(calls[1][2]), "stale");

    deliver(conn, T(A("sync"), A("ok"), [], refB));                        // a duplicate is ignored
    assert.equal(calls.length, 2);
    assert.deepEqual(clock.timers.size, 0, "timers cleared once resolved");

    // A router error for a Ref-bearing call settles that call, and only it.
    assert.equal(Backbone.sync("update", m, opts("c")), true);
    const refC = Bert.decode(conn.sent[2])[1][3];
    deliver(conn, T(A("error"), A("unknown_model"), "character"));           // no Ref: not ours
    deliver(conn, T(A("error"), A("unknown_model"), "character", refC + 7)); // another call's
    assert.equal(calls.length, 2);
    deliver(conn, T(A("error"), A("unknown_model"), "character", refC));
    assert.deepEqual(calls[2], ["c", "error", "unknown_model"]);
    assert.deepEqual(clock.timers.size, 0);
});

test("refs: timeout, send failure, and a reply delivered during send()", () => {
    const Backbone = fakeBackbone();
    const clock = new Clock();
    const { stream, conn } = makeStream();
    BulletBackbone.install(stream, { Backbone, refs: true, timeout: 5000, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout });
    const calls = [];
    const opts = { success: (r) => calls.push(["success", r]), error: (r) => calls.push(["error", String(r)]) };
    const m = new Backbone.Model("character", { id: 1 });

    Backbone.sync("update", m, opts);
    clock.tick(4999);
    assert.deepEqual(calls, []);
    clock.tick(1);
    assert.deepEqual(calls, [["error", "timeout"]]);
    deliver(conn, T(A("sync"), A("ok"), [], Bert.decode(conn.sent[0])[1][3]));
    assert.equal(calls.length, 1, "a late reply after the timeout is ignored");

    conn.result = false;
    assert.equal(Backbone.sync("update", m, opts), false);
    assert.deepEqual(calls[1], ["error", "not_sent"]);

    /* The original client's synchronous POST: the reply arrives inside send(). */
    conn.result = true;
    conn.reply = (data) => {
        conn.reply = null;
        deliver(conn, T(A("sync"), A("ok"), [T(A("id"), 2)], Bert.decode(data)[1][3]));
    };
    Backbone.sync("create", m, opts);
    assert.deepEqual(calls[2], ["success", { id: 2 }]);
    assert.equal(clock.timers.size, 0);
});

test("install without Backbone fails clearly", () => {
    const { stream } = makeStream();
    assert.throws(() => BulletBackbone.install(stream, {}), /Backbone is not loaded/);
});

test("loaded as a browser script: global BulletBackbone, Model.prototype.to_proplist installed", () => {
    const fs = require("node:fs");
    const path = require("node:path");
    const vm = require("node:vm");
    const ctx = { Backbone: fakeBackbone(), Bert };
    ctx.self = ctx;
    vm.runInNewContext(fs.readFileSync(path.join(__dirname, "..", "backbone-bullet.js"), "utf8"), ctx);
    assert.equal(typeof ctx.BulletBackbone.install, "function");
    const m = new ctx.Backbone.Model("character", { hp: 3 });
    assert.equal(Bert.encode(m.to_proplist()), Bert.encode([T(A("hp"), 3)]));
});
