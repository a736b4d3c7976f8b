"use strict";
/* bullet.js state machine, driven with fake WebSocket/EventSource/XHR and a
   fake clock (no real sleeps). Fakes are defined here, not in a helper file,
   because `node --test js/test` would run any .js file under test/. */
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");
const bullet = require("../bullet.js");

class Clock {
    constructor() { this.now = 0; this.seq = 0; this.timers = new Map(); }
    setTimeout = (fn, ms) => {
        const id = ++this.seq;
        this.timers.set(id, { id, at: this.now + (ms || 0), fn });
        return id;
    };
    clearTimeout = (id) => { this.timers.delete(id); };
    /* Run every timer due within ms, in time order, then set now += ms. */
    tick(ms) {
        const end = this.now + ms;
        for (;;) {
            let next = null;
            for (const t of this.timers.values()) {
                if (t.at <= end && (!next || t.at < next.at || (t.at === next.at && t.id < next.id))) next = t;
            }
            if (!next) break;
            this.timers.delete(next.id);
            this.now = next.at;
            next.fn();
        }
        this.now = end;
    }
    delays() { return [...this.timers.values()].map((t) => t.at - this.now).sort((a, b) => a - b); }
}

function makeEnv(extra) {
    const clock = new Clock();
    const created = []; // every transport object, in creation order
    class FakeWebSocket {
        constructor(url, protocols) {
            this.kind = "ws"; this.url = url; this.protocols = protocols; this.protocol = "";
            this.readyState = 0; this.sent = []; this.closed = false;
            created.push(this);
        }
        send(d) { if (this.readyState !== 1) throw new Error("InvalidStateError"); this.sent.push(d); }
        close() { this.closed = true; this.readyState = 2; }
        /* drivers */
        /* protocol: the subprotocol the server picked ("" for none) */
        open(protocol) { this.protocol = protocol || ""; this.readyState = 1; if (this.onopen) this.onopen({}); }
        message(d) { if (this.onmessage) this.onmessage({ data: d }); }
        drop() {
            this.readyState = 3;
            if (this.onerror) this.onerror({});
            if (this.onclose) this.onclose({ code: 1006 });
        }
    }
    class FakeEventSource {
        constructor(url) {
            this.kind = "es"; this.url = url; this.readyState = 0; this.closed = false; this.listeners = {};
            created.push(this);
        }
        addEventListener(name, fn) { (this.listeners[name] = this.listeners[name] || []).push(fn); }
        removeEventListener(name, fn) {
            this.listeners[name] = (this.listeners[name] || []).filter((f) => f !== fn);
        }
        /* a named event, as "event: <name>" in the stream */
        event(name, d) { for (const fn of (this.listeners[name] || []).slice()) fn({ type: name, data: d }); }
        close() { this.closed = true; this.readyState = 2; }
        open() { this.readyState = 1; if (this.onopen) this.onopen({}); }
        message(d) { if (this.onmessage) this.onmessage({ data: d }); }
        fail() { if (this.onerror) this.onerror({}); }
    }
    class FakeXHR {
        constructor() {
            this.kind = "xhr"; this.headers = {}; this.readyState = 0; this.status = 0; this.responseText = "";
            this.responseHeaders = {};
            created.push(this);
        }
        getResponseHeader(name) {
            const key = Object.keys(this.responseHeaders).find((k) => k.toLowerCase() === name.toLowerCase());
            return key === undefined ? null : this.responseHeaders[key];
        }
        open(method, url, async) { this.method = method; this.url = url; this.async = async; this.readyState = 1; }
        setRequestHeader(k, v) { this.headers[k] = v; }
        send(body) { this.body = body; this.sentAt = clock.now; this.sent = true; }
        abort() { this.aborted = true; }
        respond(status, text, headers) {
            this.status = status; this.responseText = text || ""; this.responseHeaders = headers || {};
            this.readyState = 4;
            if (this.onreadystatechange) this.onreadystatechange();
        }
    }
    const options = Object.assign({
        WebSocket: FakeWebSocket, EventSource: FakeEventSource, XMLHttpRequest: FakeXHR,
        setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, tabId: "tab-1",
    }, extra || {});
    const env = {
        clock, created, options,
        last: () => created[created.length - 1],
        of: (kind) => created.filter((c) => c.kind === kind),
        gets: () => created.filter((c) => c.kind === "xhr" && c.method === "GET"),
        posts: () => created.filter((c) => c.kind === "xhr" && c.method === "POST"),
    };
    return env;
}

/* A connection with every callback recorded in `log`. */
function connect(url, env) {
    const log = [];
    const conn = bullet(url, env.options);
    conn.onopen = () => log.push("open");
    conn.onclose = () => log.push("close");
    conn.ondisconnect = () => log.push("disconnect");
    conn.onheartbeat = () => log.push("heartbeat");
    conn.onmessage = (e) => log.push("msg:" + e.data);
    return { conn, log };
}

/* ---- transport selection and fallback ---- */

test("ws: URL tries WebSocket, then EventSource, then polling, converting the scheme", () => {
    const env = makeEnv();
    const { conn, log } = connect("ws://example.test/bullet", env);
    assert.equal(env.created.length, 1);
    assert.equal(env.last().kind, "ws");
    assert.equal(env.last().url, "ws://example.test/bullet?bullet_tab=" + conn.tabId + "&bullet_seen=0");
    assert.deepEqual(env.last().protocols, ["bullet.resumed", "bullet.fresh"]);

    env.last().drop();                       // closed before it opened
    assert.deepEqual(env.clock.delays(), [80]);
    env.clock.tick(79);
    assert.equal(env.created.length, 1);
    env.clock.tick(1);
    assert.equal(env.last().kind, "es");
    assert.equal(env.last().url, "http://example.test/bullet?bullet_tab=" + conn.tabId + "&bullet_seen=0");

    env.last().fail();                       // refused before it opened
    assert.ok(env.of("es")[0].closed, "our own backoff, not the browser's retry");
    assert.deepEqual(env.clock.delays(), [160]);
    env.clock.tick(160);
    assert.equal(env.last().kind, "xhr");
    assert.equal(env.last().method, "GET");
    assert.match(env.last().url, /^http:\/\/example\.test\/bullet\?_=\d+$/);
    assert.equal(conn.readyState, bullet.CONNECTING);

    env.last().respond(204);
    assert.deepEqual(log, ["open"]);
    assert.equal(conn.readyState, bullet.OPEN);
    assert.equal(conn.transport, "xhrPolling");
});

test("wss: maps to https: for EventSource and polling", () => {
    const env = makeEnv({ disableEventSource: true });
    connect("wss://example.test/b?x=1", env);
    env.last().drop();
    env.clock.tick(80);
    assert.equal(env.last().kind, "xhr");
    assert.match(env.last().url, /^https:\/\/example\.test\/b\?x=1&_=\d+$/);
});

test("http: URL skips WebSocket", () => {
    const env = makeEnv();
    const { conn } = connect("http://example.test/bullet?room=1#top", env);
    assert.equal(env.created.length, 1);
    assert.equal(env.last().kind, "es");
    assert.equal(env.last().url, "http://example.test/bullet?room=1&bullet_tab=" + conn.tabId + "&bullet_seen=0#top");
});

test("disable options remove transports; missing constructors count as unavailable", () => {
    let env = makeEnv({ disableWebSocket: true, disableEventSource: true });
    connect("ws://h/b", env);
    assert.equal(env.last().kind, "xhr");

    env = makeEnv({ WebSocket: null });
    connect("ws://h/b", env);
    assert.equal(env.last().kind, "es");

    env = makeEnv({ disableXHRPolling: true, disableEventSource: true });
    const { log } = connect("ws://h/b", env);
    env.last().drop();
    assert.deepEqual(log, ["disconnect"]);
});

test("a WebSocket constructor that throws counts as a close before open", () => {
    const env = makeEnv({ WebSocket: function () { throw new SyntaxError("bad url"); } });
    connect("ws://h/b", env);
    assert.equal(env.created.length, 0);
    env.clock.tick(0);                 // the failure is reported asynchronously
    env.clock.tick(80);
    assert.equal(env.last().kind, "es");
});

test("fallback happens only before open: an open transport that drops is retried on the same transport", () => {
    const env = makeEnv();
    const { log } = connect("ws://h/b", env);
    env.last().open();
    env.last().drop();
    assert.deepEqual(env.clock.delays(), [80]);
    env.clock.tick(80);
    assert.equal(env.created.length, 2);
    assert.equal(env.last().kind, "ws");
    env.last().open();
    assert.deepEqual(log, ["open", "open"], "onopen on every (re)open; onclose only for close()");

    /* Same on EventSource and polling. */
    const env2 = makeEnv({ disableWebSocket: true });
    connect("ws://h/b", env2);
    env2.last().open();
    env2.last().fail();
    env2.clock.tick(80);
    assert.equal(env2.last().kind, "es");

    const env3 = makeEnv({ disableWebSocket: true, disableEventSource: true });
    connect("ws://h/b", env3);
    env3.last().respond(204);
    env3.clock.tick(100);
    env3.last().respond(502);
    assert.deepEqual(env3.clock.delays(), [80]);
    env3.clock.tick(80);
    assert.equal(env3.gets().length, 3);
});

test("a refused reconnect moves down, and the client stays on the lower transport", () => {
    const env = makeEnv();
    const { log } = connect("ws://h/b", env);
    env.last().open();                 // WebSocket worked once
    env.last().drop();
    env.clock.tick(80);
    env.last().drop();                 // the reconnect is refused
    env.clock.tick(160);
    assert.equal(env.last().kind, "es");
    env.last().open();
    env.last().fail();                 // an open EventSource drops
    env.clock.tick(80);
    assert.equal(env.last().kind, "es", "never moves back up to WebSocket");
    assert.equal(env.of("ws").length, 2);
    assert.deepEqual(log, ["open", "open"]);
});

/* ---- backoff ---- */

test("reconnect delay: 80 ms, doubling while attempts fail, reset to 80 ms by an open", () => {
    const env = makeEnv();
    const { log } = connect("ws://h/b", env);
    const waits = [];
    function failAndMeasure(fail) {
        fail();
        waits.push(env.clock.delays()[0]);
        env.clock.tick(waits[waits.length - 1]);
    }
    env.last().open();
    failAndMeasure(() => env.last().drop());    // open WS dropped: 80
    failAndMeasure(() => env.last().drop());    // WS refused: 160, to EventSource
    env.last().open();                          // reset
    failAndMeasure(() => env.last().fail());    // 80
    failAndMeasure(() => env.last().fail());    // ES refused: 160, to polling
    assert.deepEqual(waits, [80, 160, 80, 160]);
    assert.equal(env.last().kind, "xhr");
    env.last().respond(200, "");
    env.clock.tick(100);
    failAndMeasure(() => env.last().respond(500));   // open poll failed: reset had happened, 80
    assert.deepEqual(waits, [80, 160, 80, 160, 80]);
    env.last().respond(0);                      // refused: nothing left
    assert.deepEqual(log, ["open", "open", "open", "disconnect"]);
});

test("delay doubles 80, 160, 320 over consecutive failed attempts; the schedule caps at 10 s", () => {
    const env = makeEnv();
    connect("ws://h/b", env);
    env.last().open();
    env.last().drop();
    const waits = [env.clock.delays()[0]];
    env.clock.tick(waits[0]);
    env.last().drop();                          // WebSocket refused
    waits.push(env.clock.delays()[0]);
    env.clock.tick(waits[1]);
    env.last().fail();                          // EventSource refused
    waits.push(env.clock.delays()[0]);
    assert.deepEqual(waits, [80, 160, 320]);
    /* Every failed attempt moves down a transport and ondisconnect resets the
       delay, so with three transports a live client never waits past 320 ms;
       the doubling rule itself (shared with the state machine) is capped: */
    const seq = [80];
    while (seq.length < 10) seq.push(bullet.nextDelay(seq[seq.length - 1]));
    assert.deepEqual(seq, [80, 160, 320, 640, 1280, 2560, 5120, 10000, 10000, 10000]);
});

test("no transport left: ondisconnect, then start over from WebSocket after 10 s with the delay reset", () => {
    const env = makeEnv();
    const { log } = connect("ws://h/b", env);
    env.last().drop();
    env.clock.tick(80);
    env.last().fail();
    env.clock.tick(160);
    env.last().respond(0);                      // network error on the first poll
    assert.deepEqual(log, ["disconnect"]);
    assert.deepEqual(env.clock.delays(), [10000]);
    env.clock.tick(9999);
    assert.equal(env.created.length, 3);
    env.clock.tick(1);
    assert.equal(env.created.length, 4);
    assert.equal(env.last().kind, "ws");
    env.last().drop();
    assert.deepEqual(env.clock.delays(), [80], "delay reset after ondisconnect");
});

test("with no usable transport at all, ondisconnect is still delivered (asynchronously)", () => {
    const env = makeEnv({ WebSocket: null, EventSource: null, XMLHttpRequest: null });
    const { log } = connect("ws://h/b", env);
    assert.deepEqual(log, []);
    env.clock.tick(0);
    assert.deepEqual(log, ["disconnect"]);
});

/* ---- heartbeat ---- */

test("heartbeat every 20 s on WebSocket only, stopped when it drops", () => {
    const env = makeEnv();
    const { log } = connect("ws://h/b", env);
    env.clock.tick(30000);
    assert.deepEqual(log, [], "no heartbeat before open");
    env.last().open();
    env.clock.tick(19999);
    assert.deepEqual(log, ["open"]);
    env.clock.tick(1);
    assert.deepEqual(log, ["open", "heartbeat"]);
    env.clock.tick(20000);
    assert.deepEqual(log, ["open", "heartbeat", "heartbeat"]);
    env.last().drop();
    env.clock.tick(60000);
    assert.equal(log.filter((x) => x === "heartbeat").length, 2);

    const env2 = makeEnv();
    const c2 = connect("http://h/b", env2);
    env2.last().open();
    env2.clock.tick(100000);
    assert.deepEqual(c2.log, ["open"], "no heartbeat on EventSource");

    const env3 = makeEnv({ EventSource: null });
    const c3 = connect("http://h/b", env3);
    env3.last().respond(204);
    for (let i = 0; i < 500; i++) { env3.clock.tick(100); env3.last().respond(204); }
    assert.deepEqual(c3.log, ["open"], "no heartbeat on polling");
});

/* ---- polling ---- */

test("polling: first answer opens, bodies are messages, next GET 100 ms after each answer", () => {
    const env = makeEnv({ EventSource: null });
    const { conn, log } = connect("http://h/bullet", env);
    const g1 = env.last();
    assert.equal(g1.method, "GET");
    assert.equal(g1.async, true);
    assert.equal(g1.sentAt, 0, "first GET at once");
    assert.deepEqual(g1.headers, {
        "Accept": "text/plain, */*; q=0.01",
        "X-Requested-With": "XMLHttpRequest",
        "X-Socket-Transport": "xhrPolling",
        "X-Bullet-Tab": "tab-1",
        "X-Bullet-Seen": "0",
    });
    assert.equal(g1.body, null);

    env.clock.tick(5000);                     // the server holds the GET
    assert.equal(env.gets().length, 1, "never two polls at once");
    g1.respond(200, "hello");
    assert.deepEqual(log, ["open", "msg:hello"]);

    env.clock.tick(99);
    assert.equal(env.gets().length, 1);
    env.clock.tick(1);
    assert.equal(env.gets().length, 2);
    const g2 = env.last();
    assert.equal(g2.sentAt, 5100);
    assert.notEqual(g2.url, g1.url, "cache-buster changes");

    g2.respond(200, "");                       // empty body: no message
    env.clock.tick(100);
    env.last().respond(204);
    env.clock.tick(100);
    env.last().respond(200, "\uFEFFbom");      // delivered as received: no stripping here
    assert.deepEqual(log, ["open", "msg:hello", "msg:\uFEFFbom"]);
    assert.equal(conn.readyState, bullet.OPEN);
});

test("polling: an HTTP error or a network error closes; close() aborts the parked GET", () => {
    const env = makeEnv({ EventSource: null });
    const { conn, log } = connect("http://h/b", env);
    env.last().respond(204);
    env.clock.tick(100);
    env.last().respond(404);
    assert.equal(conn.readyState, bullet.CONNECTING);
    assert.deepEqual(env.clock.delays(), [80]);
    env.clock.tick(80);
    const g = env.last();
    assert.equal(g.method, "GET");
    conn.close();
    assert.equal(g.aborted, true);
    assert.deepEqual(log, ["open", "close"]);
    assert.deepEqual(env.clock.delays(), []);
});

/* ---- sending ---- */

test("POSTs: raw body, original headers, one in flight, answers delivered in order", () => {
    const env = makeEnv({ EventSource: null });
    const { conn, log } = connect("ws://h/bullet", env);
    env.last().drop();
    env.clock.tick(80);
    env.last().respond(204);                  // polling open
    const body = "a%20b+c&d=e \u00e9\u0000\r\n";
    assert.equal(conn.send(body), true);
    assert.equal(conn.send("second"), true);
    assert.equal(conn.send("third"), true);
    let posts = env.posts();
    assert.equal(posts.length, 1, "one POST in flight");
    const p1 = posts[0];
    assert.equal(p1.url, "http://h/bullet");
    assert.equal(p1.async, true);
    assert.equal(p1.body, body, "body exactly as given");
    assert.deepEqual(p1.headers, {
        "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8",
        "Accept": "text/plain, */*; q=0.01",
        "X-Requested-With": "XMLHttpRequest",
        "X-Socket-Transport": "xhrPolling",
        "X-Bullet-Tab": "tab-1",
    });

    p1.respond(200, "reply-1");
    posts = env.posts();
    assert.equal(posts.length, 2);
    assert.equal(posts[1].body, "second");
    posts[1].respond(500, "oops");            // a failed POST is dropped, the queue goes on
    posts = env.posts();
    assert.equal(posts.length, 3);
    assert.equal(posts[2].body, "third");
    posts[2].respond(204);
    assert.equal(env.posts().length, 3);
    assert.deepEqual(log, ["open", "msg:reply-1"]);
});

test("EventSource: messages arrive from the stream, sends go as POSTs", () => {
    const env = makeEnv();
    const { conn, log } = connect("http://h/b", env);
    const es = env.last();
    assert.equal(conn.send("early"), true, "queued before open");
    assert.equal(env.posts().length, 0);
    es.open();
    assert.equal(env.posts().length, 1);
    assert.equal(env.posts()[0].body, "early");
    es.message("pushed");
    env.posts()[0].respond(200, "answer");
    assert.deepEqual(log, ["open", "msg:pushed", "msg:answer"]);
    assert.equal(conn.transport, "eventsource");
});

test("WebSocket: frames both ways, sends before open are flushed before onopen runs", () => {
    const env = makeEnv();
    const { conn, log } = connect("ws://h/b", env);
    const ws = env.last();
    assert.equal(conn.send("one"), true);
    assert.equal(conn.send(""), true);
    conn.onopen = () => { log.push("open"); conn.send("from-onopen"); };
    ws.open();
    assert.deepEqual(ws.sent, ["one", "", "from-onopen"]);
    ws.message("frame");
    assert.deepEqual(log, ["open", "msg:frame"]);
    assert.equal(env.posts().length, 0);
});

test("messages sent during a reconnect delay are queued (bounded) and flushed in order on open", () => {
    const env = makeEnv({ queueLimit: 3 });
    const { conn } = connect("ws://h/b", env);
    env.last().open();
    conn.send("a");
    env.last().drop();
    assert.equal(conn.send("b"), true);
    assert.equal(conn.send("c"), true);
    assert.equal(conn.send("d"), true);
    assert.equal(conn.send("e"), false, "queue full: refused like the original");
    env.clock.tick(80);
    const ws2 = env.last();
    assert.deepEqual(ws2.sent, []);
    ws2.open();
    assert.deepEqual(env.of("ws")[0].sent, ["a"]);
    assert.deepEqual(ws2.sent, ["b", "c", "d"]);
    assert.equal(conn.send("f"), true);
    assert.deepEqual(ws2.sent, ["b", "c", "d", "f"]);
});

test("a POST in flight finishes before the next message goes out, even across a transport change", () => {
    const env = makeEnv({ EventSource: null });
    const { conn } = connect("http://h/b", env);
    env.last().respond(204);
    conn.send("1");
    conn.send("2");
    const p1 = env.posts()[0];
    env.clock.tick(100);
    env.gets()[1].respond(500);               // the poll transport drops
    env.clock.tick(80);
    env.gets()[2].respond(204);               // reopened
    assert.equal(env.posts().length, 1, "still waiting for the first POST");
    p1.respond(204);
    assert.equal(env.posts().length, 2);
    assert.equal(env.posts()[1].body, "2");
});

test("close(): onclose once, no reconnect, send refused, handlers detached", () => {
    const env = makeEnv();
    const { conn, log } = connect("ws://h/b", env);
    const ws = env.last();
    ws.open();
    conn.close();
    conn.close();
    assert.deepEqual(log, ["open", "close"]);
    assert.equal(ws.closed, true);
    assert.equal(ws.onmessage, null);
    assert.equal(conn.send("x"), false);
    assert.equal(conn.readyState, bullet.CLOSED);
    env.clock.tick(60000);
    assert.equal(env.created.length, 1);
    assert.deepEqual(log, ["open", "close"], "no heartbeat after close");

    /* close() during a reconnect delay cancels the reconnect */
    const env2 = makeEnv();
    const c2 = connect("ws://h/b", env2);
    env2.last().open();
    env2.last().drop();
    c2.conn.close();
    env2.clock.tick(20000);
    assert.equal(env2.created.length, 1);
    assert.deepEqual(c2.log, ["open", "close"]);
});

test("setURL: later attempts and requests use the new URL", () => {
    const env = makeEnv({ EventSource: null });
    const { conn } = connect("ws://h/one", env);
    conn.setURL("ws://h/two");
    env.last().drop();
    env.clock.tick(80);
    assert.match(env.last().url, /^http:\/\/h\/two\?_=/);
    env.last().respond(204);
    conn.send("m");
    assert.equal(env.posts()[0].url, "http://h/two");
});

test("per-tab id: a random 128-bit id per connection object, on GETs and POSTs", () => {
    const env = makeEnv({ EventSource: null, tabId: undefined });
    delete env.options.tabId;
    const a = bullet("http://h/b", env.options);
    const b = bullet("http://h/b", env.options);
    assert.match(a.tabId, /^[0-9a-f]{32}$/);
    assert.notEqual(a.tabId, b.tabId);
    const gets = env.gets();
    assert.equal(gets[0].headers["X-Bullet-Tab"], a.tabId);
    assert.equal(gets[1].headers["X-Bullet-Tab"], b.tabId);
    gets[0].respond(204);
    a.send("x");
    assert.equal(env.posts()[0].headers["X-Bullet-Tab"], a.tabId);
});

test("an exception in a page callback does not stop polling; it is rethrown on its own", () => {
    const env = makeEnv({ EventSource: null });
    const conn = bullet("http://h/b", env.options);
    conn.onmessage = () => { throw new Error("page bug"); };
    env.last().respond(200, "x");
    assert.throws(() => env.clock.tick(0), /page bug/);
    env.clock.tick(100);
    assert.equal(env.gets().length, 2, "next poll still sent");
});

test("stale events from a replaced transport are ignored", () => {
    const env = makeEnv();
    const { log } = connect("ws://h/b", env);
    const ws1 = env.last();
    ws1.open();
    const onmessage = ws1.onmessage;
    ws1.drop();
    ws1.drop();                               // a second close event (old Firefox)
    assert.deepEqual(env.clock.delays(), [80]);
    onmessage({ data: "late" });
    assert.deepEqual(log, ["open"]);
});

/* ---- counting and resuming ---- */

/* A connection whose resets are recorded in `log` too. */
function counting(url, env) {
    const c = connect(url, env);
    c.resets = [];
    c.conn.onreset = (info) => { c.log.push("reset"); c.resets.push(info); };
    return c;
}

test("WebSocket: every frame counts; a reconnect reports the count and a resumed session keeps counting", () => {
    const env = makeEnv();
    const { conn, log, resets } = counting("ws://h/b?room=1", env);
    assert.equal(env.last().url, "ws://h/b?room=1&bullet_tab=tab-1&bullet_seen=0");
    env.last().open("bullet.fresh");           // the first session: nothing to reset
    env.last().message("a");
    conn.send("question");
    env.last().message("reply");               // a reply to a send is a frame like any other
    env.last().message("");
    assert.equal(conn.seen, 3);
    env.last().drop();
    env.clock.tick(80);
    assert.equal(env.last().url, "ws://h/b?room=1&bullet_tab=tab-1&bullet_seen=3");
    assert.deepEqual(env.last().protocols, ["bullet.resumed", "bullet.fresh"]);
    env.last().open("bullet.resumed");
    env.last().message("b");
    assert.equal(conn.seen, 4);
    env.last().drop();
    env.clock.tick(80);
    assert.equal(env.last().url, "ws://h/b?room=1&bullet_tab=tab-1&bullet_seen=4");
    assert.deepEqual(resets, []);
    assert.deepEqual(log, ["open", "msg:a", "msg:reply", "msg:", "open", "msg:b"]);
});

test("WebSocket: a fresh session after messages fires onreset once, before onopen, and the count starts again", () => {
    const env = makeEnv();
    const { conn, log, resets } = counting("ws://h/b", env);
    env.last().open("bullet.fresh");
    env.last().message("1");
    env.last().message("2");
    env.last().drop();
    env.clock.tick(80);
    env.last().open("bullet.fresh");           // the server no longer had the session
    assert.deepEqual(resets, [{ received: 2, transport: "websocket" }]);
    assert.equal(conn.seen, 0);
    env.last().message("new 1");
    assert.equal(conn.seen, 1);
    assert.deepEqual(log, ["open", "msg:1", "msg:2", "reset", "open", "msg:new 1"]);
    env.last().drop();
    env.clock.tick(80);
    assert.match(env.last().url, /&bullet_seen=1$/);
    env.last().open("bullet.resumed");
    assert.equal(resets.length, 1);
});

test("WebSocket: a server that picks no subprotocol never causes a reset", () => {
    const env = makeEnv();
    const { conn, resets } = counting("ws://h/b", env);
    env.last().open("");
    env.last().message("x");
    env.last().drop();
    env.clock.tick(80);
    env.last().open("");
    assert.equal(conn.seen, 1);
    assert.deepEqual(resets, []);
});

test("EventSource: default events count, the named bullet event does not, and says fresh or resumed", () => {
    const env = makeEnv();
    const { conn, log, resets } = counting("http://h/b", env);
    const es1 = env.last();
    es1.open();
    es1.event("bullet", "fresh");
    es1.message("a");
    es1.message("b");
    assert.equal(conn.seen, 2);
    es1.fail();
    env.clock.tick(80);
    const es2 = env.last();
    assert.equal(es2.url, "http://h/b?bullet_tab=tab-1&bullet_seen=2");
    assert.deepEqual(es1.listeners.bullet, [], "a closed stream's listener is removed");
    es2.open();
    es2.event("bullet", "resumed");
    es2.message("c");
    assert.equal(conn.seen, 3);
    assert.deepEqual(resets, []);
    es2.fail();
    env.clock.tick(80);
    const es3 = env.last();
    assert.match(es3.url, /&bullet_seen=3$/);
    es3.open();
    es3.event("bullet", "fresh");
    assert.deepEqual(resets, [{ received: 3, transport: "eventsource" }]);
    assert.equal(conn.seen, 0);
    es3.message("d");
    assert.equal(conn.seen, 1);
    assert.deepEqual(log, ["open", "msg:a", "msg:b", "open", "msg:c", "open", "reset", "msg:d"]);
    es1.event("bullet", "fresh");              // a replaced stream is not heard
    assert.equal(resets.length, 1);
});

test("polling: 200 answers count, each GET reports the count, a fresh 204 after messages resets", () => {
    const env = makeEnv({ EventSource: null });
    const { conn, log, resets } = counting("http://h/b", env);
    const fresh = { "X-Bullet-Session": "fresh" };
    assert.equal(env.last().headers["X-Bullet-Seen"], "0");
    env.last().respond(204, "", fresh);        // the first session: nothing to reset
    env.clock.tick(100);
    assert.equal(env.last().headers["X-Bullet-Seen"], "0");
    env.last().respond(200, "one");
    env.clock.tick(100);
    assert.equal(env.last().headers["X-Bullet-Seen"], "1");
    env.last().respond(204);
    env.clock.tick(100);
    assert.equal(env.last().headers["X-Bullet-Seen"], "1");
    env.last().respond(200, "two");
    env.clock.tick(100);
    assert.equal(env.last().headers["X-Bullet-Seen"], "2");

    conn.send("question");                     // POST replies are not counted
    const post = env.posts()[0];
    assert.equal(post.headers["X-Bullet-Seen"], undefined, "a POST carries no count");
    post.respond(200, "answer");
    assert.equal(conn.seen, 2);

    env.gets().at(-1).respond(500);            // the poll transport drops
    env.clock.tick(80);
    assert.equal(env.last().headers["X-Bullet-Seen"], "2");
    env.last().respond(204, "", fresh);
    assert.deepEqual(resets, [{ received: 2, transport: "xhrPolling" }]);
    assert.equal(conn.seen, 0);
    env.clock.tick(100);
    assert.equal(env.last().headers["X-Bullet-Seen"], "0");
    env.last().respond(200, "three");
    assert.equal(conn.seen, 1);
    assert.deepEqual(log, ["open", "msg:one", "msg:two", "msg:answer", "reset", "open", "msg:three"]);
});

test("polling: a fresh answer while polls go on resets too (the session ended meanwhile)", () => {
    const env = makeEnv({ EventSource: null });
    const { conn, resets } = counting("http://h/b", env);
    env.last().respond(200, "a");
    env.clock.tick(100);
    env.last().respond(204, "", { "x-bullet-session": "fresh" });
    assert.deepEqual(resets, [{ received: 1, transport: "xhrPolling" }]);
    assert.equal(conn.seen, 0);
});

test("the count belongs to the session, not the transport: it carries over when the client moves down", () => {
    const env = makeEnv();
    const { conn, resets } = counting("ws://h/b", env);
    env.last().open("bullet.fresh");
    env.last().message("1");
    env.last().drop();
    env.clock.tick(80);
    env.last().drop();                         // the WebSocket reconnect is refused
    env.clock.tick(160);
    assert.equal(env.last().kind, "es");
    assert.match(env.last().url, /&bullet_seen=1$/);
    env.last().fail();                         // the event stream too (a 406)
    env.clock.tick(320);
    assert.equal(env.last().headers["X-Bullet-Seen"], "1");
    env.last().respond(200, "2");
    assert.equal(conn.seen, 2);
    assert.deepEqual(resets, []);
});

test("messages of a replaced transport are neither delivered nor counted", () => {
    const env = makeEnv();
    const { conn } = counting("ws://h/b", env);
    const ws1 = env.last();
    ws1.open("bullet.fresh");
    const late = ws1.onmessage;
    ws1.message("x");
    ws1.drop();
    late({ data: "lost in flight" });
    assert.equal(conn.seen, 1, "the server resends it after the count");
    env.clock.tick(80);
    assert.match(env.last().url, /&bullet_seen=1$/);
});

test("an exception in onreset does not stop the connection", () => {
    const env = makeEnv();
    const { conn, log } = counting("ws://h/b", env);
    conn.onreset = () => { throw new Error("page bug"); };
    env.last().open();
    env.last().message("1");
    env.last().drop();
    env.clock.tick(80);
    env.last().open("bullet.fresh");
    env.last().message("2");
    assert.throws(() => env.clock.tick(0), /page bug/);
    assert.equal(conn.readyState, bullet.OPEN);
    assert.deepEqual(log, ["open", "msg:1", "open", "msg:2"]);
});

test("loaded as a browser script: global bullet and $.bullet", () => {
    const code = fs.readFileSync(path.join(__dirname, "..", "bullet.js"), "utf8");
    const jq = {};
    const ctx = { jQuery: jq, setTimeout, clearTimeout };
    ctx.self = ctx;
    vm.runInNewContext(code, ctx);
    assert.equal(typeof ctx.bullet, "function");
    assert.equal(jq.bullet, ctx.bullet);

    const bare = {};
    bare.self = bare;
    vm.runInNewContext(code, bare);
    assert.equal(typeof bare.bullet, "function");
});
