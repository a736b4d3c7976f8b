/*
 * The seed's Backbone page on bullet_py: one `character` model that every open
 * page shows and may edit; an edit made on one page appears on all the others.
 *
 * Backbone.sync and the Stream.on("message:sync", ...) listener are the seed's
 * code (docs/protocol.md §4); `model.to_proplist()` comes from /js/backbone-bullet.js.
 *
 * Add ?transport=websocket, ?transport=eventsource or ?transport=xhrPolling to
 * the page's address to force one transport (the default lets the client try
 * WebSocket, then EventSource, then long polling).
 */

/* ---- the connection ---- */

var FORCE = {
    websocket: {},
    eventsource: {disableWebSocket: true},
    xhrPolling: {disableWebSocket: true, disableEventSource: true}
};
var wanted = (/[?&]transport=(\w+)/.exec(location.search) || [])[1];
var Stream = BulletStream(
    (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/bullet",
    FORCE[wanted] || {}
);

/* ---- the model ---- */

var Character = Backbone.Model.extend({
    name: "character",
    validate: function (attrs) {
        if (!attrs.name || !attrs["class"]) { return "name and class must not be empty"; }
        if (!(attrs.level >= 1 && attrs.level <= 99 && attrs.level % 1 === 0)) { return "level: a whole number from 1 to 99"; }
        if (!(attrs.hp >= 0 && attrs.hp <= 9999 && attrs.hp % 1 === 0)) { return "hp: a whole number from 0 to 9999"; }
    }
});
var character = new Character();

/* ---- the seed's code ---- */

Backbone.sync = function(method, model, options) {
    var mname, msg, props;
    mname = Bert.atom(model.name);
    props = model.to_proplist();
    msg = Bert.tuple(Bert.atom(method), mname, props);
    return Stream.action("sync", msg);
};

Stream.on("message:sync", function(msg) {
    /* {sync, ok, Props}: a reply to this page or another page's change. */
    if (String(msg[1]) === "ok") {
        character.set(BulletBackbone.from_proplist(msg[2]));
    } else {
        page.notice("the server refused the change: " + String(msg[2]), true);
        character.fetch();   /* back to what the server holds */
    }
});

/* ---- the page ---- */

var page = {
    log: function (line) {
        var $log = $("#log");
        $("<li>").text(line).prependTo($log);
        $log.children().slice(6).remove();
    },
    notice: function (text, isError) {
        $("#notice").text(text).toggleClass("error", !!isError);
    },
    status: function (text, cls) {
        $("#status").text(text).attr("class", cls || "");
    }
};

function describe(model) {
    return model.get("name") + ", level " + model.get("level") + " " + model.get("class") + ", " + model.get("hp") + " hp";
}

var SheetView = Backbone.View.extend({
    el: "#sheet",
    initialize: function () { this.listenTo(this.model, "change", this.render); },
    render: function () {
        var model = this.model;
        this.$("[data-field]").each(function () {
            $(this).text(String(model.get($(this).data("field"))));
        });
        return this;
    }
});

var EditView = Backbone.View.extend({
    el: "#edit",
    events: {"submit": "save", "input input": "touched"},
    dirty: false,
    initialize: function () {
        this.listenTo(this.model, "change", this.fill);
        this.listenTo(this.model, "invalid", function (m, error) { page.notice(error, true); });
    },
    touched: function () { this.dirty = true; },
    /* Show the model in the form, unless the user is typing there. */
    fill: function () {
        var model = this.model;
        if (this.dirty) { return; }
        this.$("input").each(function () { this.value = model.get(this.name); });
    },
    save: function (e) {
        var attrs = {};
        e.preventDefault();
        this.$("input").each(function () {
            attrs[this.name] = this.type === "number" ? Number(this.value) : this.value.trim();
        });
        this.dirty = false;
        if (this.model.save(attrs) !== false) {
            page.notice("saved");
            page.log("→ update " + describe(this.model));
        }
    }
});

new SheetView({model: character});
new EditView({model: character});

Stream.on("message:sync", function (msg) {
    page.log("← sync " + String(msg[1]) + (String(msg[1]) === "ok" ? " " + describe(character) : " " + String(msg[2])));
});
Stream.on("message:error", function (msg) {
    /* {error, Reason, Detail}: the server could not serve a message; the connection stays up. */
    page.log("← error " + String(msg[1]) + " " + String(msg[2]));
    page.notice("server error: " + String(msg[1]), true);
});
Stream.on("open", function () {
    page.status("live · " + Stream.connection.transport, "open");
    character.fetch();   /* on every (re)connection: catch up with changes made meanwhile */
});
Stream.on("disconnect", function () {
    page.status("offline · retrying", "down");
});
