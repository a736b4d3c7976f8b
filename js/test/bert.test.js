"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const Bert = require("../bert.js");

const VECTORS = path.join(__dirname, "..", "..", "tests", "vectors");
function load(line) {
    return JSON.parse(fs.readFileSync(path.join(VECTORS, "bert-js-" + line + ".json"), "utf8")).vectors;
}
function evalJs(expr) {
    return new Function("Bert", "return (" + expr + ");")(Bert);
}
function fromCodes(codes) {
    let s = "";
    for (const c of codes) s += String.fromCharCode(c);
    return s;
}
function codes(s) {
    const out = [];
    for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i));
    return out;
}
/* The vectors' JSON notation for decoded values. */
function toJson(v) {
    if (v instanceof Bert.Atom) return { atom: v.value };
    if (v instanceof Bert.Binary) return { binary: v.value };
    if (v instanceof Bert.Tuple) return { tuple: Array.from({ length: v.length }, (_, i) => toJson(v[i])) };
    if (Array.isArray(v)) return v.map(toJson);
    return v;
}

const v2016 = load("2016");
const v2012 = load("2012");

test("vector files are present and non-trivial", () => {
    assert.ok(v2016.length >= 30);
    assert.ok(v2012.length >= 30);
});

for (const v of v2016) {
    test("encode 2016: " + v.name, () => {
        assert.deepEqual(codes(Bert.encode(evalJs(v.js))), v.codepoints);
    });
}

for (const [line, vectors] of [["2016", v2016], ["2012", v2012]]) {
    for (const v of vectors) {
        test("decode " + line + ": " + v.name, () => {
            assert.deepEqual(toJson(Bert.decode(fromCodes(v.codepoints))), v.js_decode);
        });
    }
}

test("round trip of 2016 vectors through decode/encode", () => {
    for (const v of v2016) {
        const s = fromCodes(v.codepoints);
        assert.equal(Bert.encode(Bert.decode(s)), s, v.name);
    }
});

test("float text is %.20e with a two-digit exponent, NUL-padded to 31", () => {
    const enc = Bert.encode(1.5e-100);
    assert.equal(enc.charCodeAt(1), 99);
    assert.equal(enc.length, 33);
    assert.equal(enc.slice(2).replace(/\0+$/, ""), "1.50000000000000002999e-100");
    assert.equal(Bert.decode(enc), 1.5e-100);
    assert.equal(Bert.encode(1e100).charCodeAt(1), 110); // integral: a bignum, as BERT-JS
    assert.equal(Bert.decode(Bert.encode(-2.5e-300)), -2.5e-300);
});

test("integer boundaries pick 97 / 98 / 110", () => {
    assert.deepEqual(codes(Bert.encode(-134217729)), [131, 110, 4, 1, 1, 0, 0, 8]);
    assert.deepEqual(codes(Bert.encode(134217728)), [131, 110, 4, 0, 0, 0, 0, 8]);
    assert.equal(Bert.decode(Bert.encode(-(2 ** 31))), -(2 ** 31));
    assert.equal(Bert.decode(Bert.encode(2 ** 52 + 1)), 2 ** 52 + 1);
    assert.equal(Bert.decode(Bert.encode(1e300)), 1e300);
    assert.deepEqual(codes(Bert.encode(12345678901234567890n)).slice(0, 4), [131, 110, 8, 0]);
    assert.equal(Bert.decode(Bert.encode(-5n)), -5);
});

test("decoder reads what BERT-JS misreads: 98 with first byte 0x80, 2-byte lengths >= 0x8000", () => {
    assert.equal(Bert.decode(fromCodes([131, 98, 0x80, 0, 0, 0])), -(2 ** 31));
    assert.equal(Bert.decode(fromCodes([131, 98, 0x80, 0xff, 0xff, 0xff])), -(2 ** 31) + 2 ** 24 - 1);
    const long = "x".repeat(40000);
    const s = String.fromCharCode(131, 107, 40000 >> 8, 40000 & 255) + long;
    assert.equal(Bert.decode(s), long);
    assert.equal(Bert.encode(long), s);
});

test("strings beyond 65535 code units are written as a binary", () => {
    const big = "é".repeat(70000);
    const enc = Bert.encode(big);
    assert.deepEqual(codes(enc.slice(0, 6)), [131, 109, 0, 1, 0x11, 0x70]);
    const dec = Bert.decode(enc);
    assert.ok(dec instanceof Bert.Binary);
    assert.equal(dec.value, big);
});

test("decoder reads small atom (115), large tuple (105), large big (111), {bert,nil} tails", () => {
    assert.deepEqual(toJson(Bert.decode(fromCodes([131, 115, 2, 111, 107]))), { atom: "ok" });
    const t = Bert.decode(fromCodes([131, 105, 0, 0, 0, 2, 97, 1, 97, 2]));
    assert.deepEqual(toJson(t), { tuple: [1, 2] });
    assert.equal(Bert.decode(fromCodes([131, 111, 0, 0, 0, 2, 1, 0, 1])), -256);
    assert.equal(Bert.decode(fromCodes([131, 106])).length, 0);
    assert.equal(Bert.decode(fromCodes([131, 104, 2, 100, 0, 4, 98, 101, 114, 116, 100, 0, 4, 116, 105, 109, 101])) instanceof Bert.Tuple, true);
});

test("tuples are indexable and atoms print their name", () => {
    const m = Bert.decode(Bert.encode(Bert.tuple(Bert.atom("sync"), Bert.atom("ok"), [1])));
    assert.equal(m.type, "Tuple");
    assert.equal(m.length, 3);
    assert.equal(m[0].type, "Atom");
    assert.equal(String(m[0]), "sync");
    assert.equal(m[1].value, "ok");
    assert.deepEqual(m[2], [1]);
    assert.equal(String(m), "{sync, ok, 1}");
});

test("encoder accepts BERT-JS-shaped foreign objects", () => {
    const foreignAtom = { type: "Atom", value: "hi", toString() { return "hi"; } };
    const foreignTuple = { type: "Tuple", length: 2, value: [foreignAtom, 1], 0: foreignAtom, 1: 1 };
    assert.equal(Bert.encode(foreignTuple), Bert.encode(Bert.tuple(Bert.atom("hi"), 1)));
    const foreignBin = { type: "Binary", value: "ab" };
    assert.equal(Bert.encode(foreignBin), Bert.encode(Bert.binary("ab")));
});

test("encode refuses values it cannot represent", () => {
    assert.throws(() => Bert.encode(undefined), TypeError);
    assert.throws(() => Bert.encode(() => 1), TypeError);
    assert.throws(() => Bert.encode(NaN), RangeError);
    assert.throws(() => Bert.encode(Infinity), RangeError);
});

test("decode rejects malformed input", () => {
    const bad = [
        [],                        // empty
        [130, 97, 1],              // bad version
        [131],                     // version only
        [131, 97],                 // truncated small int
        [131, 98, 0, 0, 1],        // truncated int
        [131, 100, 0, 5, 104],     // truncated atom
        [131, 107, 0, 9, 104],     // truncated string
        [131, 108, 0, 0, 0, 1, 97, 1], // list without tail
        [131, 108, 0, 0, 0, 1, 97, 1, 97, 2], // improper list
        [131, 108, 255, 255, 255, 255], // absurd count
        [131, 97, 1, 97],          // trailing data
        [131, 118, 0, 1, 97],      // UTF-8 atom: not a BERT-JS tag
        [131, 70, 0, 0, 0, 0, 0, 0, 0, 0], // new float: not a BERT-JS tag
        [131, 97, 300],            // char code above 255 where a byte is expected
        [131, 99, ...codes("nan".padEnd(31, "\0"))], // bad float text
    ];
    for (const b of bad) {
        assert.throws(() => Bert.decode(fromCodes(b)), /Bert\.decode/, JSON.stringify(b));
    }
    assert.throws(() => Bert.decode(42), TypeError);
    let deep = "";
    for (let i = 0; i < 5000; i++) deep += String.fromCharCode(108, 0, 0, 0, 1);
    assert.throws(() => Bert.decode(String.fromCharCode(131) + deep + "j"), /too deep/);
});
