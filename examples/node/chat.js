#!/usr/bin/env node
// A chat backend for sidecast, Node 20 with no npm packages (node:net only).
//
// Usage: node chat.js [SOCKET_PATH]
// The socket path defaults to $SIDECAST_SOCKET, then ./sidecast.sock.
//
// What it does (see proto/PROTOCOL.md for the messages):
//   - serves namespace "/" and authorizes connections: a client must send auth {token: ...};
//     the token is the user's name, kept by sidecast as the socket's data {name: token};
//   - on connect, joins the socket to the room named by the query parameter `room` (default
//     "lobby") and emits "joined" {sid, name} to that room;
//   - event "message" [text]: emits "message" {from: sid, name, text} to the room and answers
//     the ack with {ok: true} when the client asked for one;
//   - event "who": answers the ack with [{sid, name}, ...] for the room, from a `fetch` request
//     (the names come from each socket's data);
//   - on disconnect, emits "left" {sid, name} to the room;
//   - reconnects every second while sidecast is away.
"use strict";

const net = require("node:net");

const NAMESPACE = "/";
const DEFAULT_ROOM = "lobby";
const path = process.argv[2] || process.env.SIDECAST_SOCKET || "./sidecast.sock";

const log = (...parts) => console.error("chat:", ...parts);

// The name in a socket's data (a `connect` message or a `fetch` result), else its sid.
function nameOf(socket, sid) {
  const name = socket.data && typeof socket.data === "object" ? socket.data.name : undefined;
  return typeof name === "string" && name ? name : sid;
}

// One attachment to sidecast: line framing, and replies matched to requests by id.
class Connection {
  constructor(socket, onMessage) {
    this.socket = socket;
    this.nextId = 1;
    this.pending = new Map(); // request id -> callback(reply)
    let buffered = "";
    socket.setEncoding("utf8"); // decodes multi-byte characters split across chunks correctly
    socket.on("data", (chunk) => {
      buffered += chunk;
      let end;
      while ((end = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 1);
        if (!line.trim()) continue;
        let message;
        try {
          message = JSON.parse(line);
        } catch (error) {
          // As in the other languages: drop this connection and attach again a second later.
          log("connection lost:", error.message);
          socket.destroy();
          return;
        }
        onMessage(message);
      }
    });
  }

  send(message) {
    this.socket.write(JSON.stringify(message) + "\n");
  }

  // Sends a command with an id; `callback(reply)` runs when sidecast answers it.
  request(message, callback) {
    message.id = this.nextId++;
    this.pending.set(message.id, callback);
    this.send(message);
  }
}

// The application: reacts to sidecast's messages on one connection.
class Chat {
  constructor(conn) {
    this.conn = conn;
    this.members = new Map(); // sid -> {room, name}: the chat room it joined, its name
  }

  emit(room, event, ...args) {
    this.conn.send({ type: "emit", nsp: NAMESPACE, event, args, to: [room] });
  }

  // Answers the client's acknowledgement, if the event asked for one.
  answer(message, ...args) {
    if ("ack" in message) {
      this.conn.send({ type: "ack", sid: message.sid, nsp: message.nsp, ack: message.ack, args });
    }
  }

  onConnect(message) {
    const { sid } = message;
    if ("req" in message) {
      // An authorization question: the socket does not exist yet.
      const token = message.auth && message.auth.token;
      if (typeof token === "string" && token) {
        // The socket's data: sidecast hands it back in every later connect and fetch.
        this.conn.send({ type: "accept", req: message.req, data: { name: token } });
      } else {
        this.conn.send({ type: "reject", req: message.req, message: "missing token" });
      }
      return;
    }
    const room = message.handshake.query.room || DEFAULT_ROOM;
    const name = nameOf(message, sid);
    this.members.set(sid, { room, name });
    // Known before this backend (re)started: sidecast kept its rooms, nothing to redo.
    if (message.resumed) return;
    this.conn.send({ type: "join", sid, nsp: NAMESPACE, rooms: [room] });
    this.emit(room, "joined", { sid, name });
  }

  onEvent(message) {
    const { sid } = message;
    const { room, name } = this.members.get(sid) || { room: DEFAULT_ROOM, name: sid };
    if (message.event === "message") {
      const text = message.args.length > 0 ? message.args[0] : "";
      this.emit(room, "message", { from: sid, name, text });
      this.answer(message, { ok: true });
    } else if (message.event === "who" && "ack" in message) {
      // Never wait for a reply inside a handler: the reply arrives through the same read loop.
      this.conn.request({ type: "fetch", nsp: NAMESPACE, in: [room] }, (reply) => {
        const sockets = reply.ok ? reply.sockets : [];
        this.answer(message, sockets.map((s) => ({ sid: s.sid, name: nameOf(s, s.sid) })));
      });
    }
  }

  onDisconnect(message) {
    const member = this.members.get(message.sid);
    this.members.delete(message.sid);
    if (member !== undefined) this.emit(member.room, "left", { sid: message.sid, name: member.name });
  }

  dispatch(message) {
    switch (message.type) {
      case "connect": return this.onConnect(message);
      case "event": return this.onEvent(message);
      case "disconnect": return this.onDisconnect(message);
      case "reply": {
        const callback = this.conn.pending.get(message.id);
        this.conn.pending.delete(message.id);
        if (callback) callback(message);
        return;
      }
      case "welcome": return log("attached to sidecast node", message.node);
      case "error": return log("sidecast reports", message.error, "for", JSON.stringify(message.line));
      case "shutdown": return log("sidecast is shutting down");
      // Other types may appear in later protocol versions: ignore them.
    }
  }
}

let waiting = false;

// Attaches once; when the connection ends or fails, tries again a second later.
function attach() {
  const socket = net.createConnection({ path });
  let chat;
  socket.on("connect", () => {
    waiting = false;
    chat = new Chat(new Connection(socket, (message) => chat.dispatch(message)));
    chat.conn.send({ type: "hello", version: 1, nsps: [NAMESPACE], group: "chat", authorize: true });
  });
  socket.on("error", (error) => {
    if (error.code === "ENOENT" || error.code === "ECONNREFUSED") {
      if (!waiting) log("waiting for sidecast at", path);
      waiting = true;
    } else {
      log("connection lost:", error.message);
    }
  });
  socket.on("close", () => {
    if (chat) log("sidecast closed the connection");
    setTimeout(attach, 1000);
  });
}

attach();
