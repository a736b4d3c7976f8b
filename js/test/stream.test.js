"use strict";
/* stream.js: action encoding, message events, callbacks, Backbone-style
   events, and compatibility with BERT-JS-shaped terms. */
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");
const Bert = require("../bert.js");
const realBullet = require("../bullet.js");
const BulletStream = require("../stream.js");

const VECTORS = path.join(__dirname, "..", "..", "tests", "vectors");
const v2016 = JSON.parse(fs.readFileSync(path.join(VECTORS, "bert-js-2016.json"), "utf8")).vectors;
const vector = (name) => String.fromCharCode(...v2016.find((v) => v.name === name).codepoints);

/* A stand-in for the connection object that $.bullet/bullet return. */
function fakeBullet() {
    const made = [];
    const factory = function (url, options) {
        const conn = {
            url, options, sent: [], sendResult: true, closed: 0, urls: [],
            send(d) { this.sent.push(d); return this.sendResult; },
            close() { this.closed++; },
            setURL(u) { this.urls.push(u); },
            onopen() {}, onmessage() {}, onclose() {}, ondisconnect() {}, onheartbeat() {},
        };
        made.push(conn);
        return conn;
    };
    factory.made = made;
    return factory;
}

function withGlobals(globals, fn) {
    const saved = {};
    for (const k of Object.keys(globals)) { saved[k] = globalThis[k]; globalThis[k] = globals[k]; }
    try { return fn(); } finally {
        for (const k of Object.keys(globals)) {
            if (saved[k] === undefined) delete globalThis[k]; else globalThis[k] = saved[k];
        }
    }
}

function newStream(extraGlobals) {
    const b = fakeBullet();
    const stream = withGlobals(Object.assign({ bullet: b, Bert }, extraGlobals || {}),
        () => BulletStream("ws://h/bullet", { disableEventSource: true }));
    globalThis.Bert = Bert;   // Bert is looked up when used
    return { stream, conn: b.made[0], factory: b };
}

test("builds the connection with the global bullet(url, options)", () => {
    const { stream, conn } = newStream();
    assert.equal(conn.url, "ws://h/bullet");
    assert.deepEqual(conn.options, { disableEventSource: true });
    assert.equal(stream.connection, conn);
});

test("prefers $.bullet when jQuery provides it", () => {
    const jqBullet = fakeBullet();
    const globalBullet = fakeBullet();
    withGlobals({ $: { bullet: jqBullet }, bullet: globalBullet }, () => BulletStream("ws://h/b"));
    assert.equal(jqBullet.made.length, 1);
    assert.equal(globalBullet.made.length, 0);
});

test("action(Name, Msg) sends Bert.encode({Name, Msg}) and returns what send returned", () => {
    const { stream, conn } = newStream();
    const msg = Bert.tuple(Bert.atom("update"), Bert.atom("character"), [
        Bert.tuple(Bert.atom("id"), 1), Bert.tuple(Bert.atom("name"), "Zoë"),
        Bert.tuple(Bert.atom("hp"), 42), Bert.tuple(Bert.atom("alive"), true)]);
    assert.equal(stream.action("sync", msg), true);
    assert.equal(conn.sent[0], vector("blog sync update"));
    conn.sendResult = false;
    assert.equal(stream.action("sync", msg), false);
});

test("send, close and setURL go to the connection", () => {
    const { stream, conn } = newStream();
    assert.equal(stream.send("raw text"), true);
    assert.deepEqual(conn.sent, ["raw text"]);
    stream.setURL("ws://h/other");
    assert.deepEqual(conn.urls, ["ws://h/other"]);
    stream.close();
    assert.equal(conn.closed, 1);
});

test("a tuple with an atom tag triggers message:Tag with the tuple, then message", () => {
    const { stream, conn } = newStream();
    const seen = [];
    stream.on("message:sync", (msg) => seen.push(["sync", String(msg[1]), msg[2]]));
    stream.on("message", (msg) => seen.push(["message", msg.type]));
    stream.on("message:other", () => seen.push(["other"]));
    conn.onmessage({ data: vector("blog sync reply") });
    assert.equal(seen.length, 2);
    assert.deepEqual(seen[0][0], "sync");
    assert.equal(seen[0][1], "ok");
    assert.equal(seen[0][2].length, 2);
    assert.equal(String(seen[0][2][1][0]), "name");
    assert.equal(seen[0][2][1][1], "Zoë");
    assert.deepEqual(seen[1], ["message", "Tuple"]);
});

test("non-tuple messages trigger only message; undecodable ones trigger undecodable", () => {
    const { stream, conn } = newStream();
    const seen = [];
    stream.on("all", (name, ...args) => seen.push([name, args]));
    conn.onmessage({ data: vector("list") });
    conn.onmessage({ data: vector("tuple") });          // first element is a string, not an atom
    conn.onmessage({ data: "pong" });
    assert.deepEqual(seen[0], ["message", [[1, 2, 3]]]);
    assert.equal(seen[1][0], "message");
    assert.equal(seen[2][0], "undecodable");
    assert.equal(seen[2][1][0], "pong");
    assert.match(String(seen[2][1][1]), /Bert\.decode/);
    assert.equal(seen.length, 3);
});

test("onopen/onclose/ondisconnect/onheartbeat set on the Stream run, and the events fire", () => {
    const { stream, conn } = newStream();
    const log = [];
    stream.onopen = function () { log.push(["cb:open", this === stream]); };
    stream.onheartbeat = () => { log.push(["cb:heartbeat"]); stream.send("ping"); };
    stream.onclose = () => log.push(["cb:close"]);
    stream.ondisconnect = () => log.push(["cb:disconnect"]);
    stream.onmessage = (e) => log.push(["cb:message", e.data]);
    for (const ev of ["open", "close", "disconnect", "heartbeat"]) stream.on(ev, () => log.push(["ev:" + ev]));
    conn.onopen();
    conn.onheartbeat();
    conn.onclose();
    conn.ondisconnect();
    conn.onmessage({ data: "x" });
    assert.deepEqual(log, [
        ["cb:open", true], ["ev:open"],
        ["cb:heartbeat"], ["ev:heartbeat"],
        ["cb:close"], ["ev:close"],
        ["cb:disconnect"], ["ev:disconnect"],
        ["cb:message", "x"],
    ]);
    assert.deepEqual(conn.sent, ["ping"]);
});

test("onreset set on the Stream runs with the reset's info, and the reset event fires with it", () => {
    const { stream, conn } = newStream();
    const log = [];
    stream.onreset = function (info) { log.push(["cb:reset", info, this === stream]); };
    stream.on("reset", (info) => log.push(["ev:reset", info]));
    stream.on("all", (name, info) => log.push(["all", name, info]));
    const info = { received: 3, transport: "websocket" };
    conn.onreset(info);
    assert.deepEqual(log, [["cb:reset", info, true], ["ev:reset", info], ["all", "reset", info]]);
});

test("a Stream on the real bullet.js hears a reset", () => {
    const made = [], timers = [];
    class WS {
        constructor(url) { this.url = url; this.protocol = ""; made.push(this); }
        close() {}
    }
    const stream = withGlobals({ bullet: realBullet, Bert }, () => BulletStream("ws://h/b", {
        WebSocket: WS, EventSource: null, XMLHttpRequest: null,
        setTimeout: (fn) => timers.push(fn), clearTimeout: () => {},
    }));
    const resets = [];
    stream.on("reset", (info) => resets.push(info));
    made[0].protocol = "bullet.fresh";
    made[0].onopen({});
    made[0].onmessage({ data: Bert.encode(Bert.atom("hi")) });
    made[0].onclose({});
    timers.pop()();                             // the reconnect
    made[1].protocol = "bullet.fresh";
    made[1].onopen({});
    assert.deepEqual(resets, [{ received: 1, transport: "websocket" }]);
    stream.close();
});

test("events: on with context, off by name/fn/context, once, several names, all", () => {
    const { stream } = newStream();
    const log = [];
    const ctx = { id: "ctx" };
    function a(x) { log.push(["a", x, this.id]); }
    function b(x) { log.push(["b", x]); }
    stream.on("e1 e2", a, ctx);
    stream.on("e1", b);
    stream.once("e1", (x) => log.push(["once", x]));
    stream.trigger("e1", 1);
    stream.trigger("e1", 2);
    stream.trigger("e2", 3);
    assert.deepEqual(log, [["a", 1, "ctx"], ["b", 1], ["once", 1], ["a", 2, "ctx"], ["b", 2], ["a", 3, "ctx"]]);
    log.length = 0;
    stream.off("e1", a);
    stream.trigger("e1", 4);
    stream.trigger("e2", 5);
    assert.deepEqual(log, [["b", 4], ["a", 5, "ctx"]]);
    log.length = 0;
    stream.off(null, null, ctx);
    stream.trigger("e2", 6);
    stream.off();
    stream.trigger("e1", 7);
    assert.deepEqual(log, []);
    assert.equal(stream.on("x", b), stream, "chainable");
});

test("one throwing listener does not stop the others; its error is reported", () => {
    const { stream, conn } = newStream();
    const errors = [];
    const saved = BulletStream.reportError;
    BulletStream.reportError = (e) => errors.push(e.message);
    try {
        const log = [];
        stream.on("message:sync", () => { throw new Error("listener bug"); });
        stream.on("message:sync", () => log.push("second"));
        stream.on("message", () => log.push("message"));
        conn.onmessage({ data: vector("blog sync reply") });
        assert.deepEqual(log, ["second", "message"]);
        assert.deepEqual(errors, ["listener bug"]);
    } finally {
        BulletStream.reportError = saved;
    }
});

test("works with BERT-JS-shaped terms (2012 line: atom true, tuples without indexes)", () => {
    /* A stand-in for the original library: tuples {type, length, value} and
       atoms {type, value}, where the atom true carries the JS boolean. */
    const atom = (v) => ({ type: "Atom", value: v, toString() { return String(v); } });
    const tuple = (...items) => ({ type: "Tuple", length: items.length, value: items });
    const OldBert = {
        atom, tuple,
        encode: (t) => "ENC:" + JSON.stringify(t),
        decode: () => tuple(atom("flag"), atom(true), [tuple(atom("k"), 1)]),
    };
    const { stream, conn } = newStream({ Bert: OldBert });
    globalThis.Bert = OldBert;
    try {
        let got = null;
        stream.on("message:flag", (msg) => { got = msg; });
        conn.onmessage({ data: "whatever" });
        assert.ok(got);
        assert.equal(got[1].value, true);
        assert.equal(got[2][0].value[1], 1);
        stream.action("sync", tuple(atom("read"), atom("character"), []));
        assert.match(conn.sent[0], /^ENC:\{"type":"Tuple","length":2/);
    } finally {
        globalThis.Bert = Bert;
    }
});

test("end to end with the real bullet.js and a fake WebSocket", () => {
    const sockets = [];
    class WS {
        constructor(url) { this.url = url; this.readyState = 0; this.sent = []; sockets.push(this); }
        send(d) { this.sent.push(d); }
        close() {}
    }
    const timers = [];
    const stream = withGlobals({ bullet: realBullet, Bert }, () => BulletStream("ws://h/b", {
        WebSocket: WS, EventSource: null, XMLHttpRequest: null,
        setTimeout: (fn, ms) => timers.push([fn, ms]), clearTimeout: () => {},
    }));
    globalThis.Bert = Bert;
    const log = [];
    stream.on("open", () => log.push("open"));
    stream.on("message:sync", (msg) => log.push("sync:" + msg[1]));
    const ws = sockets[0];
    ws.readyState = 1;
    ws.onopen();
    stream.action("sync", Bert.tuple(Bert.atom("read"), Bert.atom("character"), []));
    ws.onmessage({ data: vector("blog sync reply") });
    assert.deepEqual(log, ["open", "sync:ok"]);
    assert.equal(Bert.decode(ws.sent[0])[1][0].value, "read");
});

test("loaded as a browser script it defines the global BulletStream", () => {
    const code = fs.readFileSync(path.join(__dirname, "..", "stream.js"), "utf8");
    const ctx = {};
    ctx.self = ctx;
    vm.runInNewContext(code, ctx);
    assert.equal(typeof ctx.BulletStream, "function");
    const bcode = fs.readFileSync(path.join(__dirname, "..", "bert.js"), "utf8");
    vm.runInNewContext(bcode, ctx);
    assert.equal(typeof ctx.Bert.encode, "function");
});
