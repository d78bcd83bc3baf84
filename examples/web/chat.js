// The chat page: talks to sidecast (and through it to an examples/ chat backend) with the
// official Socket.IO client. The room comes from the page's URL (?room=kitchen, default lobby);
// sidecast's URL from ?server=..., else from config.js (examples/python/web.py), else port 3000
// of this page's host.
"use strict";

const params = new URLSearchParams(location.search);
const room = params.get("room") || "lobby";
const server = params.get("server") || window.SIDECAST_URL || `${location.protocol}//${location.hostname}:3000`;
const ACK_TIMEOUT_MS = 5000;

const $ = (id) => document.getElementById(id);
let socket = null;

$("room").textContent = room;

function setStatus(text, state) {
  $("status").textContent = text;
  $("status").dataset.state = state;
}

function setConnected(connected) {
  for (const id of ["text", "send", "refresh"]) $(id).disabled = !connected;
  document.body.dataset.sid = connected ? socket.id : "";
}

// Appends a line to the conversation; text only (never HTML), so messages cannot inject markup.
function addLine(kind, from, text) {
  const item = document.createElement("li");
  item.className = kind;
  if (from !== null) {
    const name = document.createElement("span");
    name.className = "from";
    name.textContent = from === socket.id ? `${from} (you)` : from;
    name.dataset.sid = from;
    item.append(name);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  item.append(body);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

// Asks the backend who is in the room ("who" answers through its ack) and lists them.
function refreshWho() {
  if (!socket || !socket.connected) return;
  socket.timeout(ACK_TIMEOUT_MS).emit("who", (err, sids) => {
    if (err) return setStatus("no answer to who", "error");
    const list = $("online");
    list.replaceChildren(...sids.sort().map((sid) => {
      const item = document.createElement("li");
      item.textContent = sid === socket.id ? `${sid} (you)` : sid;
      item.dataset.sid = sid;
      return item;
    }));
  });
}

function join(token) {
  if (socket) socket.disconnect();
  $("messages").replaceChildren();
  $("online").replaceChildren();
  setStatus("connecting…", "connecting");
  socket = io(server, { query: { room }, auth: { token } });

  socket.on("connect", () => {
    setConnected(true);
    setStatus(`connected as ${socket.id}`, "connected");
    refreshWho();
  });
  socket.on("connect_error", (err) => {
    // A rejection by the backend (e.g. "missing token") is final; other errors are retried.
    setStatus(socket.active ? `cannot reach sidecast (${err.message}), retrying` : `rejected: ${err.message}`,
      "error");
  });
  socket.on("disconnect", (reason) => {
    setConnected(false);
    setStatus(`disconnected (${reason})`, "disconnected");
  });
  socket.on("joined", ({ sid }) => {
    addLine("notice", null, `${sid === socket.id ? "you" : sid} joined`);
    refreshWho();
  });
  socket.on("left", ({ sid }) => {
    addLine("notice", null, `${sid} left`);
    refreshWho();
  });
  socket.on("message", ({ from, text }) => addLine(from === socket.id ? "message mine" : "message", from, text));
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
  const sent = addLine("pending", null, `sending: ${text}`);
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

$("refresh").addEventListener("click", refreshWho);
