/*
 * bert.js - BERT (Binary ERlang Term) encoder/decoder for bullet_py pages.
 *
 * Same API as BERT-JS: Bert.atom, Bert.binary, Bert.tuple, Bert.encode,
 * Bert.decode. Encoded terms are "binary strings": one JS char code per byte
 * position, exactly what BERT-JS (2016 line) returns; a JS string holding
 * chars above 255 is written code unit for code unit (see docs/protocol.md §2.1, §3).
 *
 * Browser: defines the global `Bert`. Node/CommonJS: module.exports.
 */
(function (root, factory) {
    "use strict";
    var api = factory();
    if (typeof module === "object" && module && module.exports) {
        module.exports = api;
    } else {
        root.Bert = api;
    }
}(typeof self !== "undefined" ? self : (typeof globalThis !== "undefined" ? globalThis : this), function () {
    "use strict";

    var VERSION = 131;
    var SMALL_INTEGER = 97, INTEGER = 98, FLOAT = 99, ATOM = 100,
        SMALL_TUPLE = 104, LARGE_TUPLE = 105, NIL = 106, STRING = 107,
        LIST = 108, BINARY = 109, SMALL_BIG = 110, LARGE_BIG = 111,
        SMALL_ATOM = 115;
    var INT_MIN = -134217728, INT_MAX = 134217727; /* -2^27 .. 2^27-1, as BERT-JS */
    var MAX_DEPTH = 2000;
    var chr = String.fromCharCode;

    /* ---- term types (same shape as BERT-JS: type, value, tuple indexes) ---- */

    function Atom(value) {
        this.type = "Atom";
        this.value = value;
    }
    Atom.prototype.toString = function () { return String(this.value); };

    function Binary(value) {
        this.type = "Binary";
        this.value = value;
    }
    Binary.prototype.toString = function () { return "<<\"" + this.value + "\">>"; };

    function Tuple(items) {
        var i;
        this.type = "Tuple";
        this.value = items;
        this.length = items.length;
        for (i = 0; i < items.length; i++) { this[i] = items[i]; }
    }
    Tuple.prototype.toString = function () {
        var parts = [], i;
        for (i = 0; i < this.length; i++) { parts.push(String(this[i])); }
        return "{" + parts.join(", ") + "}";
    };

    /* Duck-typed checks, so terms built by another BERT-JS copy also work. */
    function kind(x) {
        return (x && typeof x === "object" && typeof x.type === "string") ? x.type.toLowerCase() : "";
    }
    function isAtom(x) { return x instanceof Atom || (kind(x) === "atom" && "value" in x); }
    function isBinary(x) { return x instanceof Binary || (kind(x) === "binary" && typeof x.value === "string"); }
    function isTuple(x) { return x instanceof Tuple || (kind(x) === "tuple" && typeof x.length === "number"); }
    function tupleItem(t, i) {
        return (i in t || !t.value) ? t[i] : t.value[i];
    }

    /* ---- encoder ---- */

    function u16(n) { return chr((n >>> 8) & 255, n & 255); }
    function u32(n) { return chr((n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255); }

    function checkLength(n, max, what) {
        if (n > max) { throw new RangeError("Bert.encode: " + what + " too long (" + n + ")"); }
    }

    function putAtom(name, out) {
        name = String(name);
        checkLength(name.length, 65535, "atom");
        out.push(chr(ATOM), u16(name.length), name);
    }

    function putBertTag(name, out) { /* {bert, name} */
        out.push(chr(SMALL_TUPLE, 2));
        putAtom("bert", out);
        putAtom(name, out);
    }

    function putString(s, out) {
        if (s.length <= 65535) {
            out.push(chr(STRING), u16(s.length), s);
        } else {
            /* A string (107) has a 2-byte length: longer text goes as a binary,
               code unit for code unit (BERT-JS would write a wrong length). */
            out.push(chr(BINARY), u32(s.length), s);
        }
    }

    function putBig(negative, magnitude, out) {
        /* magnitude: a non-negative integral Number; bytes little-endian. */
        var bytes = [], b;
        while (magnitude > 0) {
            b = magnitude % 256;
            bytes.push(b);
            magnitude = (magnitude - b) / 256;
        }
        out.push(chr(SMALL_BIG, bytes.length, negative ? 1 : 0));
        out.push(chr.apply(null, bytes));
    }

    function putInteger(n, out) {
        if (n >= 0 && n <= 255) {
            out.push(chr(SMALL_INTEGER, n));
        } else if (n >= INT_MIN && n <= INT_MAX) {
            out.push(chr(INTEGER), u32(n >>> 0));
        } else {
            putBig(n < 0, Math.abs(n), out);
        }
    }

    function putBigInt(n, out) {
        var neg, bytes, zero, b256;
        if (n >= BigInt(INT_MIN) && n <= BigInt(INT_MAX)) { putInteger(Number(n), out); return; }
        zero = BigInt(0);
        b256 = BigInt(256);
        neg = n < zero;
        if (neg) { n = -n; }
        bytes = [];
        while (n > zero) { bytes.push(Number(n % b256)); n = n / b256; }
        if (bytes.length > 255) {
            out.push(chr(LARGE_BIG), u32(bytes.length), chr(neg ? 1 : 0));
        } else {
            out.push(chr(SMALL_BIG, bytes.length, neg ? 1 : 0));
        }
        out.push(chr.apply(null, bytes));
    }

    /* The float text BERT-JS 2016 writes: C's "%.20e" (exponent of at least
       two digits), NUL-padded to 31 chars. */
    function floatText(x) {
        var s = x.toExponential(20), e = s.indexOf("e"), exp = s.slice(e + 2);
        if (exp.length < 2) { exp = "0" + exp; }
        s = s.slice(0, e + 2) + exp;
        while (s.length < 31) { s += "\u0000"; }
        return s;
    }

    function putNumber(x, out) {
        if (Math.floor(x) === x && isFinite(x)) {
            putInteger(x, out);
        } else if (isFinite(x)) {
            out.push(chr(FLOAT), floatText(x));
        } else {
            throw new RangeError("Bert.encode: cannot encode " + x);
        }
    }

    function putTerm(v, out, depth) {
        var i, n, keys;
        if (depth > MAX_DEPTH) { throw new RangeError("Bert.encode: nesting too deep"); }
        switch (typeof v) {
        case "string":
            putString(v, out);
            return;
        case "number":
            putNumber(v, out);
            return;
        case "boolean":
            putBertTag(v ? "true" : "false", out);
            return;
        case "bigint":
            putBigInt(v, out);
            return;
        case "object":
            if (v === null) {
                putAtom("null", out);
            } else if (isAtom(v)) {
                putAtom(v.value, out);
            } else if (isBinary(v)) {
                out.push(chr(BINARY), u32(v.value.length), v.value);
            } else if (isTuple(v)) {
                n = v.length;
                if (n < 256) {
                    out.push(chr(SMALL_TUPLE, n));
                } else {
                    out.push(chr(LARGE_TUPLE), u32(n));
                }
                for (i = 0; i < n; i++) { putTerm(tupleItem(v, i), out, depth + 1); }
            } else if (Array.isArray(v)) {
                if (v.length === 0) {
                    putBertTag("nil", out);
                    return;
                }
                out.push(chr(LIST), u32(v.length));
                for (i = 0; i < v.length; i++) { putTerm(v[i], out, depth + 1); }
                out.push(chr(NIL));
            } else {
                /* Plain object: proplist [{atom(Key), Value}]; {} is like []. */
                keys = Object.keys(v);
                if (keys.length === 0) {
                    putBertTag("nil", out);
                    return;
                }
                out.push(chr(LIST), u32(keys.length));
                for (i = 0; i < keys.length; i++) {
                    out.push(chr(SMALL_TUPLE, 2));
                    putAtom(keys[i], out);
                    putTerm(v[keys[i]], out, depth + 1);
                }
                out.push(chr(NIL));
            }
            return;
        default:
            throw new TypeError("Bert.encode: cannot encode a value of type " + typeof v);
        }
    }

    function encode(value) {
        var out = [chr(VERSION)];
        putTerm(value, out, 0);
        return out.join("");
    }

    /* ---- decoder ---- */

    function DecodeError(message, offset) {
        var e = new Error("Bert.decode: " + message + " at offset " + offset);
        e.name = "BertDecodeError";
        e.offset = offset;
        return e;
    }

    function Reader(s) {
        this.s = s;
        this.pos = 0;
    }
    Reader.prototype.need = function (n) {
        if (this.pos + n > this.s.length) { throw DecodeError("truncated term", this.pos); }
    };
    Reader.prototype.byte = function () {
        var c;
        this.need(1);
        c = this.s.charCodeAt(this.pos);
        if (c > 255) { throw DecodeError("char code " + c + " where a byte was expected", this.pos); }
        this.pos += 1;
        return c;
    };
    Reader.prototype.u16 = function () { return this.byte() * 256 + this.byte(); };
    Reader.prototype.u32 = function () {
        return this.byte() * 16777216 + this.byte() * 65536 + this.byte() * 256 + this.byte();
    };
    Reader.prototype.text = function (n) {
        var t;
        this.need(n);
        t = this.s.substr(this.pos, n);
        this.pos += n;
        return t;
    };
    Reader.prototype.count = function (n) {
        /* every element takes at least one position: reject absurd counts early */
        if (n > this.s.length - this.pos) { throw DecodeError("truncated term", this.pos); }
        return n;
    };
    Reader.prototype.big = function (n) {
        var sign = this.byte(), value = 0, scale = 1, i;
        this.need(n);
        for (i = 0; i < n; i++) {
            value += this.byte() * scale;
            scale *= 256;
        }
        if (!isFinite(value)) { throw DecodeError("integer too large", this.pos); }
        return sign ? -value : value;
    };
    Reader.prototype.atom = function (name) {
        /* As BERT-JS: the atoms true/false become atoms whose value is the JS boolean. */
        if (name === "true") { return new Atom(true); }
        if (name === "false") { return new Atom(false); }
        return new Atom(name);
    };
    Reader.prototype.items = function (n, depth) {
        var items = [], i;
        for (i = 0; i < n; i++) { items.push(this.term(depth + 1)); }
        return items;
    };
    Reader.prototype.tuple = function (items) {
        var tag;
        if (items.length === 2 && items[0] instanceof Atom && items[0].value === "bert" &&
                items[1] instanceof Atom) {
            tag = items[1].value;
            if (tag === true) { return true; }
            if (tag === false) { return false; }
            if (tag === "nil") { return []; }
        }
        return new Tuple(items);
    };
    Reader.prototype.term = function (depth) {
        var start = this.pos, tag, n, text, x, items, tail;
        if (depth > MAX_DEPTH) { throw DecodeError("nesting too deep", start); }
        tag = this.byte();
        switch (tag) {
        case SMALL_INTEGER:
            return this.byte();
        case INTEGER:
            n = this.u32();
            return n >= 2147483648 ? n - 4294967296 : n;
        case SMALL_BIG:
            return this.big(this.byte());
        case LARGE_BIG:
            return this.big(this.u32());
        case FLOAT:
            text = this.text(31);
            n = text.indexOf("\u0000");
            if (n >= 0) { text = text.slice(0, n); }
            if (!/^\s*[+\-]?(\d+\.?\d*|\.\d+)([eE][+\-]?\d+)?\s*$/.test(text)) {
                throw DecodeError("bad float text", start);
            }
            return parseFloat(text);
        case SMALL_ATOM:
            return this.atom(this.text(this.byte()));
        case ATOM:
            return this.atom(this.text(this.u16()));
        case BINARY:
            return new Binary(this.text(this.u32()));
        case STRING:
            return this.text(this.u16());
        case NIL:
            return [];
        case SMALL_TUPLE:
            return this.tuple(this.items(this.byte(), depth));
        case LARGE_TUPLE:
            return this.tuple(this.items(this.count(this.u32()), depth));
        case LIST:
            n = this.count(this.u32());
            items = this.items(n, depth);
            x = this.pos;
            tail = this.term(depth + 1);
            if (!(Array.isArray(tail) && tail.length === 0)) { throw DecodeError("improper list", x); }
            return items;
        default:
            throw DecodeError("unsupported tag " + tag, start);
        }
    };

    function decode(s) {
        var r, v;
        if (typeof s !== "string") { throw new TypeError("Bert.decode: expected a string"); }
        r = new Reader(s);
        if (r.byte() !== VERSION) { throw DecodeError("bad version byte", 0); }
        v = r.term(0);
        if (r.pos !== s.length) { throw DecodeError("trailing data", r.pos); }
        return v;
    }

    return {
        atom: function (name) { return new Atom(name); },
        binary: function (data) { return new Binary(data); },
        tuple: function () { return new Tuple(Array.prototype.slice.call(arguments)); },
        encode: encode,
        decode: decode,
        /* helpers (not in BERT-JS) */
        Atom: Atom,
        Binary: Binary,
        Tuple: Tuple,
        isAtom: isAtom,
        isBinary: isBinary,
        isTuple: isTuple
    };
}));
