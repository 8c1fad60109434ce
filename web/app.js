// steedos-socket demo page: plain JS, no build step. Uses the socket.io-client bundle the node
// serves at /socket.io/socket.io.js; the browser sends the X-Space-Id / X-Auth-Token cookies itself
// (same origin).
(function () {
  "use strict";

  var MAX_ROWS = 500;
  var $ = function (id) { return document.getElementById(id); };
  var joined = new Set();
  var eventCount = 0;
  var pingSentAt = 0;

  // ---- cookies ---------------------------------------------------------------------------------
  function readCookie(name) {
    var parts = document.cookie ? document.cookie.split(";") : [];
    for (var i = 0; i < parts.length; i++) {
      var p = parts[i].trim();
      var eq = p.indexOf("=");
      if (eq > 0 && p.slice(0, eq) === name) {
        var v = p.slice(eq + 1);
        try { return decodeURIComponent(v); } catch (e) { return v; }
      }
    }
    return null;
  }
  function writeCookie(name, value) {
    if (value) {
      document.cookie = name + "=" + encodeURIComponent(value) + "; path=/; SameSite=Lax";
    } else {
      document.cookie = name + "=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT";
    }
  }
  function mask(token) {
    if (token.length <= 4) return "****";
    return token.slice(0, 2) + "…" + token.slice(-2) + " (" + token.length + " chars)";
  }
  function showSession() {
    var space = readCookie("X-Space-Id");
    var token = readCookie("X-Auth-Token");
    $("tenant").textContent = space || "not set";
    $("token").textContent = token ? "set: " + mask(token) : "not set (anonymous)";
    if (space && !$("in-space").value) $("in-space").value = space;
  }

  // ---- event log -------------------------------------------------------------------------------
  function stamp() {
    var d = new Date();
    var pad = function (n, w) { return String(n).padStart(w || 2, "0"); };
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." +
      pad(d.getMilliseconds(), 3);
  }
  function json(args) {
    return args.map(function (a) {
      if (a === undefined) return "undefined";
      try { return JSON.stringify(a); } catch (e) { return String(a); }
    }).join(", ");
  }
  // kind: "in" (from the server), "out" (sent by the page), "sys" (connection changes)
  function log(kind, name, args) {
    var tr = document.createElement("tr");
    tr.className = kind;
    tr.dataset.event = name;
    var t = document.createElement("td");
    t.textContent = stamp();
    var n = document.createElement("td");
    n.className = "n";
    n.textContent = (kind === "out" ? "→ " : kind === "sys" ? "• " : "") + name;
    var a = document.createElement("td");
    a.className = "args";
    a.textContent = args && args.length ? json(args) : "";
    tr.append(t, n, a);
    var body = $("log");
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
    if (kind === "in") $("event-count").textContent = String(++eventCount);
  }

  // ---- connection ------------------------------------------------------------------------------
  function setState(state, detail) {
    var badge = $("conn");
    badge.className = "badge state-" + state;
    badge.dataset.state = state;
    $("conn-state").textContent = state;
    $("conn-transport").textContent = detail || "";
  }
  function transportName() {
    return socket.io.engine && socket.io.engine.transport ? socket.io.engine.transport.name : "";
  }
  function showTransport() {
    var name = transportName();
    $("transport").textContent = name || "–";
    if (socket.connected) setState("connected", name);
  }

  var socket = io({ path: "/socket.io", withCredentials: true });

  socket.on("connect", function () {
    $("sid").textContent = socket.id;
    $("last-error").textContent = "–";
    showTransport();
    log("sys", "connect", [{ id: socket.id, transport: transportName() }]);
    socket.io.engine.once("upgrade", function () {
      showTransport();
      log("sys", "upgrade", [{ transport: transportName() }]);
    });
  });
  socket.on("disconnect", function (reason) {
    setState("disconnected", reason);
    $("sid").textContent = "–";
    $("transport").textContent = "–";
    $("init").textContent = "not yet";
    joined.clear();
    renderJoined();
    log("sys", "disconnect", [reason]);
  });
  socket.on("connect_error", function (err) {
    setState("connecting", "retrying");
    $("last-error").textContent = err && err.message ? err.message : String(err);
    log("sys", "connect_error", [err && err.message ? err.message : String(err)]);
  });
  socket.io.on("reconnect_attempt", function (n) { setState("connecting", "attempt " + n); });

  // connection-init: the node has set up the session; subscribing is possible from now on.
  socket.on("connection-init", function () {
    $("init").textContent = "received " + stamp();
    $("conn").dataset.init = "1";
  });
  socket.on("pong", function (time) {
    $("pong").textContent = String(time);
    if (pingSentAt) $("rtt").textContent = (Date.now() - pingSentAt) + " ms";
    pingSentAt = 0;
  });
  socket.onAny(function (name) {
    log("in", name, Array.prototype.slice.call(arguments, 1));
  });

  function reconnect() {
    showSession();
    setState("connecting", "reconnecting");
    socket.disconnect();
    socket.connect();
  }

  // ---- rooms -----------------------------------------------------------------------------------
  function renderJoined() {
    var ul = $("joined");
    ul.textContent = "";
    joined.forEach(function (r) {
      var li = document.createElement("li");
      li.textContent = r;
      ul.appendChild(li);
    });
  }
  function roomRequest() {
    var parts = $("in-rooms").value.split(",").map(function (s) { return s.trim(); })
      .filter(function (s) { return s.length > 0; });
    var arg = { roomParts: parts.length === 1 ? parts[0] : parts, individual: $("in-individual").checked };
    return parts.length ? arg : null;
  }
  function sendRooms(event) {
    var arg = roomRequest();
    var ack = $("ack");
    if (!arg) { ack.textContent = "enter at least one room part"; ack.className = "err"; return; }
    log("out", event, [arg]);
    ack.textContent = "waiting…";
    ack.className = "";
    socket.timeout(5000).emit(event, arg, function (err, reply) {
      if (err) { ack.textContent = "no reply (" + err.message + ")"; ack.className = "err"; return; }
      ack.textContent = event + " → " + JSON.stringify(reply);
      ack.className = reply && reply.error ? "err" : "ok";
      if (reply && Array.isArray(reply.rooms)) {
        reply.rooms.forEach(function (r) { if (event === "subscribe") joined.add(r); else joined.delete(r); });
        renderJoined();
      }
    });
  }

  // ---- wiring ----------------------------------------------------------------------------------
  $("room-form").addEventListener("submit", function (e) { e.preventDefault(); sendRooms("subscribe"); });
  $("btn-unsubscribe").addEventListener("click", function () { sendRooms("unsubscribe"); });
  $("btn-ping").addEventListener("click", function () {
    pingSentAt = Date.now();
    log("out", "ping", []);
    socket.emit("ping");
  });
  $("cookie-form").addEventListener("submit", function (e) {
    e.preventDefault();
    writeCookie("X-Space-Id", $("in-space").value.trim());
    writeCookie("X-Auth-Token", $("in-token").value.trim());
    $("in-token").value = "";
    reconnect();
  });
  $("btn-clear-cookies").addEventListener("click", function () {
    writeCookie("X-Space-Id", "");
    writeCookie("X-Auth-Token", "");
    $("in-space").value = "";
    $("in-token").value = "";
    reconnect();
  });
  $("btn-reconnect").addEventListener("click", reconnect);
  $("btn-disconnect").addEventListener("click", function () { socket.disconnect(); });
  $("btn-clear-log").addEventListener("click", function () {
    $("log").textContent = "";
    eventCount = 0;
    $("event-count").textContent = "0";
  });

  showSession();
  window.demo = { socket: socket }; // for the console
})();
