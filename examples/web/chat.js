// The chat page: talks to sidecast (and through it to an examples/ chat backend) with the
// official Socket.IO client. The room comes from the page's URL (?room=kitchen, default lobby);
// sidecast's URL from ?server=..., else from config.js (examples/python/web.py), else port 3000
// of this page's host.
//
// The name typed in is the token; the backend keeps it as the socket's data and sends it with
// every "joined", "message" and "left". The online list is asked once ("who") on connect and then
// kept up to date by the "joined" and "left" events the backend pushes to the room.
"use strict";

const params = new URLSearchParams(location.search);
const room = params.get("room") || "lobby";
const server = params.get("server") || window.SIDECAST_URL || `${location.protocol}//${location.hostname}:3000`;
const ACK_TIMEOUT_MS = 5000;

const $ = (id) => document.getElementById(id);
let socket = null;
let myName = "";
// Who is in the room: sid -> name, in the order they were first seen.
let online = new Map();
// Sids that left while the "who" answer was on its way: that answer may still list them.
let gone = new Set();

$("room").textContent = room;

function setStatus(text, state) {
  $("status").textContent = text;
  $("status").dataset.state = state;
}

function setConnected(connected) {
  for (const id of ["text", "send"]) $(id).disabled = !connected;
  document.body.dataset.sid = connected ? socket.id : "";
  $("me").textContent = connected ? socket.id : "";
  $("me").hidden = !connected;
}

function label(sid, name) {
  return sid === socket.id ? `${name} (you)` : name;
}

// Appends a line to the conversation; text only (never HTML), so messages cannot inject markup.
function addLine(kind, from, name, text) {
  const item = document.createElement("li");
  item.className = kind;
  if (from !== null) {
    const sender = document.createElement("span");
    sender.className = "from";
    sender.textContent = label(from, name);
    sender.title = `socket id ${from}`;
    sender.dataset.sid = from;
    item.append(sender);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  item.append(body);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function showOnline() {
  const members = [...online].sort(([, a], [, b]) => a.localeCompare(b));
  $("online").replaceChildren(...members.map(([sid, name]) => {
    const item = document.createElement("li");
    item.textContent = label(sid, name);
    item.title = `socket id ${sid}`;
    item.dataset.sid = sid;
    return item;
  }));
}

// The room as it is now; "joined" and "left" events keep it current from then on.
function askWho() {
  gone = new Set();
  socket.timeout(ACK_TIMEOUT_MS).emit("who", (err, members) => {
    if (err) return setStatus("no answer to who", "error");
    for (const { sid, name } of members) {
      if (!gone.has(sid)) online.set(sid, name);
    }
    showOnline();
  });
}

function join(name) {
  if (socket) socket.disconnect();
  myName = name;
  $("messages").replaceChildren();
  online = new Map();
  showOnline();
  setStatus("connecting…", "connecting");
  socket = io(server, { query: { room }, auth: { token: name } });

  socket.on("connect", () => {
    setConnected(true);
    setStatus(`connected as ${myName}`, "connected");
    online = new Map([[socket.id, myName]]);
    showOnline();
    askWho();
  });
  socket.on("connect_error", (err) => {
    // A rejection by the backend (e.g. "missing token") is final; other errors are retried.
    setStatus(socket.active ? `cannot reach sidecast (${err.message}), retrying` : `rejected: ${err.message}`,
      "error");
  });
  socket.on("disconnect", (reason) => {
    setConnected(false);
    online = new Map();
    showOnline();
    setStatus(`disconnected (${reason})`, "disconnected");
  });
  socket.on("joined", ({ sid, name }) => {
    addLine("notice", null, null, `${sid === socket.id ? "you" : name} joined`);
    gone.delete(sid);
    online.set(sid, name);
    showOnline();
  });
  socket.on("left", ({ sid, name }) => {
    addLine("notice", null, null, `${name} left`);
    gone.add(sid);
    online.delete(sid);
    showOnline();
  });
  socket.on("message", ({ from, name, text }) =>
    addLine(from === socket.id ? "message mine" : "message", from, name, text));
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  join($("token").value.trim());
});

$("compose").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text || !socket) return;
  $("text").value = "";
  const sent = addLine("pending", null, null, `sending: ${text}`);
  socket.timeout(ACK_TIMEOUT_MS).emit("message", text, (err, answer) => {
    // The room's "message" event shows the text; this line only reports the acknowledgement.
    if (err || !answer || !answer.ok) {
      sent.className = "failed";
      sent.lastChild.textContent = `not delivered: ${text}`;
    } else {
      sent.remove();
    }
  });
});

// Leaving the page (closing it, or going elsewhere while the browser keeps it in its
// back/forward cache) leaves the chat at once: a frozen page sends no pings, and would otherwise
// stay online for sidecast's ping interval plus timeout. Coming back from that cache joins again.
let rejoinOnShow = false;
window.addEventListener("pagehide", () => {
  rejoinOnShow = socket !== null && socket.connected;
  if (rejoinOnShow) socket.disconnect();
});
window.addEventListener("pageshow", (event) => {
  if (event.persisted && rejoinOnShow) join(myName);
});
