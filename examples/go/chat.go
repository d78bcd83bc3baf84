// Command chat is a chat backend for sidecast, using only the Go standard library.
//
// Usage: go run . [SOCKET_PATH]
// The socket path defaults to $SIDECAST_SOCKET, then ./sidecast.sock.
//
// What it does (see proto/PROTOCOL.md for the messages):
//   - serves namespace "/" and authorizes connections: a client must send auth {"token": ...};
//     the token is the user's name, kept by sidecast as the socket's data {"name": token};
//   - on connect, joins the socket to the room named by the query parameter `room` (default
//     "lobby") and emits "joined" {"sid": sid, "name": name} to that room;
//   - event "message" [text]: emits "message" {"from": sid, "name": name, "text": text} to the
//     room and answers the ack with {"ok": true} when the client asked for one;
//   - event "who": answers the ack with [{"sid": sid, "name": name}, ...] for the room, from a
//     `fetch` request (the names come from each socket's data);
//   - on disconnect, emits "left" {"sid": sid, "name": name} to the room;
//   - reconnects every second while sidecast is away.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"syscall"
	"time"
)

const (
	namespace   = "/"
	defaultRoom = "lobby"
)

// message is one NDJSON line, in either direction.
type message = map[string]any

// connection is one attachment to sidecast: line framing, and replies matched to requests by id.
type connection struct {
	conn    net.Conn
	lines   *bufio.Reader
	nextID  int
	pending map[string]func(reply message) // request id -> callback
}

func (c *connection) send(m message) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = c.conn.Write(append(data, '\n'))
	return err
}

// request sends a command with an id; callback runs when sidecast answers it. The read loop
// keeps running meanwhile: never wait for a reply inside a handler, or it could never be read.
func (c *connection) request(m message, callback func(reply message)) error {
	c.nextID++
	m["id"] = c.nextID
	c.pending[fmt.Sprint(c.nextID)] = callback
	return c.send(m)
}

// receive returns the next message from sidecast; io.EOF when the connection closed.
func (c *connection) receive() (message, error) {
	for {
		line, err := c.lines.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			decoder := json.NewDecoder(bytes.NewReader(line))
			decoder.UseNumber() // keeps ack and req numbers exactly as sidecast wrote them
			var m message
			if decodeErr := decoder.Decode(&m); decodeErr != nil {
				return nil, decodeErr
			}
			return m, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// member is what the chat knows of one socket: the room it joined and its name.
type member struct {
	room, name string
}

// nameOf returns the name in a socket's data (a `connect` message or a `fetch` result), else sid.
func nameOf(socket message, sid string) string {
	data, _ := socket["data"].(map[string]any)
	if name, _ := data["name"].(string); name != "" {
		return name
	}
	return sid
}

// chat is the application: it reacts to sidecast's messages on one connection.
type chat struct {
	conn    *connection
	members map[string]member // sid -> its room and name
}

func (ch *chat) emit(room, event string, args ...any) error {
	return ch.conn.send(message{"type": "emit", "nsp": namespace, "event": event, "args": args, "to": []string{room}})
}

// answer answers the client's acknowledgement, if the event asked for one.
func (ch *chat) answer(m message, args ...any) error {
	ack, ok := m["ack"]
	if !ok {
		return nil
	}
	return ch.conn.send(message{"type": "ack", "sid": m["sid"], "nsp": m["nsp"], "ack": ack, "args": args})
}

func (ch *chat) onConnect(m message) error {
	sid, _ := m["sid"].(string)
	if req, ok := m["req"]; ok {
		// An authorization question: the socket does not exist yet.
		auth, _ := m["auth"].(map[string]any)
		if token, _ := auth["token"].(string); token != "" {
			// The socket's data: sidecast hands it back in every later connect and fetch.
			return ch.conn.send(message{"type": "accept", "req": req, "data": message{"name": token}})
		}
		return ch.conn.send(message{"type": "reject", "req": req, "message": "missing token"})
	}
	handshake, _ := m["handshake"].(map[string]any)
	query, _ := handshake["query"].(map[string]any)
	room, _ := query["room"].(string)
	if room == "" {
		room = defaultRoom
	}
	name := nameOf(m, sid)
	ch.members[sid] = member{room: room, name: name}
	if resumed, _ := m["resumed"].(bool); resumed {
		// Known before this backend (re)started: sidecast kept its rooms, nothing to redo.
		return nil
	}
	if err := ch.conn.send(message{"type": "join", "sid": sid, "nsp": namespace, "rooms": []string{room}}); err != nil {
		return err
	}
	return ch.emit(room, "joined", message{"sid": sid, "name": name})
}

func (ch *chat) onEvent(m message) error {
	sid, _ := m["sid"].(string)
	who, ok := ch.members[sid]
	if !ok {
		who = member{room: defaultRoom, name: sid}
	}
	room := who.room
	switch m["event"] {
	case "message":
		var text any = ""
		if args, _ := m["args"].([]any); len(args) > 0 {
			text = args[0]
		}
		if err := ch.emit(room, "message", message{"from": sid, "name": who.name, "text": text}); err != nil {
			return err
		}
		return ch.answer(m, message{"ok": true})
	case "who":
		if _, ok := m["ack"]; !ok {
			return nil
		}
		return ch.conn.request(message{"type": "fetch", "nsp": namespace, "in": []string{room}}, func(reply message) {
			online := []message{}
			if reply["ok"] == true {
				sockets, _ := reply["sockets"].([]any)
				for _, s := range sockets {
					if socket, ok := s.(map[string]any); ok {
						if id, ok := socket["sid"].(string); ok {
							online = append(online, message{"sid": id, "name": nameOf(socket, id)})
						}
					}
				}
			}
			if err := ch.answer(m, online); err != nil {
				log.Print("connection lost: ", err)
			}
		})
	}
	return nil
}

func (ch *chat) onDisconnect(m message) error {
	sid, _ := m["sid"].(string)
	who, ok := ch.members[sid]
	if !ok {
		return nil
	}
	delete(ch.members, sid)
	return ch.emit(who.room, "left", message{"sid": sid, "name": who.name})
}

func (ch *chat) dispatch(m message) error {
	switch m["type"] {
	case "connect":
		return ch.onConnect(m)
	case "event":
		return ch.onEvent(m)
	case "disconnect":
		return ch.onDisconnect(m)
	case "reply":
		key := fmt.Sprint(m["id"])
		if callback, ok := ch.conn.pending[key]; ok {
			delete(ch.conn.pending, key)
			callback(m)
		}
	case "welcome":
		log.Print("attached to sidecast node ", m["node"])
	case "error":
		line, _ := json.Marshal(m["line"])
		log.Printf("sidecast reports %v for %s", m["error"], line)
	case "shutdown":
		log.Print("sidecast is shutting down")
		// Other types may appear in later protocol versions: ignore them.
	}
	return nil
}

// serve attaches once and handles messages until sidecast goes away.
func serve(path string) error {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return err
	}
	defer conn.Close()
	c := &connection{conn: conn, lines: bufio.NewReader(conn), pending: map[string]func(message){}}
	hello := message{"type": "hello", "version": 1, "nsps": []string{namespace}, "group": "chat", "authorize": true}
	if err := c.send(hello); err != nil {
		return err
	}
	ch := &chat{conn: c, members: map[string]member{}}
	for {
		m, err := c.receive()
		if err != nil {
			return err
		}
		if err := ch.dispatch(m); err != nil {
			return err
		}
	}
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("chat: ")
	path := "./sidecast.sock"
	if len(os.Args) > 1 && os.Args[1] != "" {
		path = os.Args[1]
	} else if env := os.Getenv("SIDECAST_SOCKET"); env != "" {
		path = env
	}
	waiting := false
	for {
		err := serve(path)
		switch {
		case errors.Is(err, io.EOF):
			log.Print("sidecast closed the connection")
			waiting = false
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
			if !waiting {
				log.Print("waiting for sidecast at ", path)
				waiting = true
			}
		default:
			log.Print("connection lost: ", err)
			waiting = false
		}
		time.Sleep(time.Second)
	}
}
