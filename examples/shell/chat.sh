#!/usr/bin/env bash
# A chat backend for sidecast in bash, with socat (the Unix socket) and jq (the JSON).
#
# Usage: bash chat.sh [SOCKET_PATH]
# The socket path defaults to $SIDECAST_SOCKET, then ./sidecast.sock.
#
# What it does (see proto/PROTOCOL.md for the messages):
#   - serves namespace "/" and authorizes connections: a client must send auth {"token": ...};
#     the token is the user's name, kept by sidecast as the socket's data {"name": token};
#   - on connect, joins the socket to the room named by the query parameter `room` (default
#     "lobby") and emits "joined" {"sid": sid, "name": name} to that room;
#   - event "message" [text]: emits "message" {"from": sid, "name": name, "text": text} to the
#     room and answers the ack with {"ok": true} when the client asked for one;
#   - event "who": answers the ack with [{"sid": sid, "name": name}, ...] for the room, from a
#     `fetch` request (the names come from each socket's data);
#   - on disconnect, emits "left" {"sid": sid, "name": name} to the room;
#   - reconnects every second while sidecast is away (no socket, or nobody listening on it);
#     a path it may not use (permission denied, not a socket) is an error: it says so and exits.
#
# How: socat runs as a bash coprocess connected to sidecast. One jq process reads sidecast's
# lines and keeps the chat's state (each sid's room and name, the pending `fetch` requests) in a
# `foreach` over its inputs, so no process is started per message. jq writes commands as JSON
# objects and log lines as plain strings; `route` sends the first to sidecast, the second to stderr.
set -u

path=${1:-${SIDECAST_SOCKET:-./sidecast.sock}}

for tool in socat jq; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "chat: $tool is not installed" >&2
        exit 1
    fi
done

# shellcheck disable=SC2016 # $m and friends are jq variables, not shell ones.
program='
def emit($room; $event; $args): {type: "emit", nsp: "/", event: $event, args: $args, to: [$room]};
def answer($m; $args): if $m.ack != null then [{type: "ack", sid: $m.sid, nsp: $m.nsp, ack: $m.ack, args: $args}] else [] end;
def room_of($m): ($m.handshake.query.room // "") | if . == "" then "lobby" else . end;
def token_ok($m): ($m.auth | type) == "object" and ($m.auth.token | type) == "string" and $m.auth.token != "";
# The name in a socket'"'"'s data (a `connect` message or a `fetch` result), else its sid.
def name_of($s): if ($s.data | type) == "object" and ($s.data.name | type) == "string" and $s.data.name != "" then $s.data.name else $s.sid end;

{type: "hello", version: 1, nsps: ["/"], group: "chat", authorize: true},
foreach inputs as $m (
  {members: {}, pending: {}, next: 1, out: []};
  .out = []
  | if $m.type == "connect" and $m.req != null then
      # An authorization question: the socket does not exist yet.
      # The socket'"'"'s data: sidecast hands it back in every later connect and fetch.
      .out = [if token_ok($m) then {type: "accept", req: $m.req, data: {name: $m.auth.token}}
              else {type: "reject", req: $m.req, message: "missing token"} end]
    elif $m.type == "connect" then
      room_of($m) as $room
      | name_of($m) as $name
      | .members[$m.sid] = {room: $room, name: $name}
      # A resumed socket was known before this backend (re)started: sidecast kept its rooms.
      | if $m.resumed == true then .
        else .out = [{type: "join", sid: $m.sid, nsp: "/", rooms: [$room]},
                     emit($room; "joined"; [{sid: $m.sid, name: $name}])] end
    elif $m.type == "event" then
      (.members[$m.sid] // {room: "lobby", name: $m.sid}) as {room: $room, name: $name}
      | if $m.event == "message" then
          .out = [emit($room; "message"; [{from: $m.sid, name: $name, text: (if ($m.args | length) > 0 then $m.args[0] else "" end)}])] + answer($m; [{ok: true}])
        elif $m.event == "who" and $m.ack != null then
          # The reply arrives later as an input of its own: remember whom it answers.
          .pending[.next | tostring] = $m
          | .out = [{type: "fetch", id: .next, nsp: "/", in: [$room]}]
          | .next += 1
        else . end
    elif $m.type == "disconnect" then
      .members[$m.sid] as $member
      | if $member == null then .
        else .members |= del(.[$m.sid]) | .out = [emit($member.room; "left"; [{sid: $m.sid, name: $member.name}])] end
    elif $m.type == "reply" then
      ($m.id | tostring) as $id
      | .pending[$id] as $asked
      | if $asked == null then .
        else .pending |= del(.[$id])
          | .out = answer($asked; [if $m.ok then [$m.sockets[] | {sid, name: name_of(.)}] else [] end]) end
    elif $m.type == "welcome" then .out = ["attached to sidecast node \($m.node)"]
    elif $m.type == "error" then .out = ["sidecast reports \($m.error | tojson) for \($m.line | tojson)"]
    elif $m.type == "shutdown" then .out = ["sidecast is shutting down"]
    else . end;  # Other types may appear in later protocol versions: ignore them.
  .out[]
)'

# Commands (JSON objects) go to stdout, which is sidecast; anything else is a log line.
route() {
    local line
    while IFS= read -r line; do
        case $line in
            "{"*) printf '%s\n' "$line" ;;
            *) printf 'chat: %s\n' "$line" >&2 ;;
        esac
    done
}

socat_pid=
pipeline_pid=
stop() {
    # shellcheck disable=SC2086 # the pids are unquoted on purpose: either may be empty.
    kill $socat_pid $pipeline_pid 2>/dev/null
    exit 0
}
trap stop TERM INT

# Attaches once and handles messages until sidecast goes away; fails when it could not connect.
serve() {
    coproc SIDECAST { exec socat - "UNIX-CONNECT:$path" 2>/dev/null; }
    # Bash forgets the coprocess's pid and descriptors as soon as it has exited (when socat
    # could not connect).
    socat_pid=${SIDECAST_PID:-}
    [ -n "$socat_pid" ] || return 1
    local from to
    # Copies of the coprocess's descriptors: the originals are not passed to child processes.
    if ! { exec {from}<&"${SIDECAST[0]:-}" {to}>&"${SIDECAST[1]:-}"; } 2>/dev/null; then
        wait "$socat_pid"
        return 1
    fi
    # In the background, so that `wait` (unlike a foreground command) lets the trap run at once.
    jq -n -r -c --unbuffered "$program" <&"$from" | route >&"$to" &
    pipeline_pid=$!
    exec {from}<&- {to}>&-
    wait "$pipeline_pid"
    wait "$socat_pid"
}

# Says what is wrong and exits when waiting would not help; returns when it might (no socket
# yet, or one nobody listens on while sidecast restarts).
fail_if_unusable() {
    local dir
    dir=$(dirname -- "$path")
    if [ -e "$path" ] && [ ! -S "$path" ]; then
        echo "chat: $path is not a socket; pass the path sidecast was given with --socket" >&2
    elif [ -d "$dir" ] && [ ! -x "$dir" ]; then
        echo "chat: permission denied: cannot reach $path (no search permission on $dir); run as a user in sidecast's socket group" >&2
    elif [ -S "$path" ] && [ ! -w "$path" ]; then
        echo "chat: permission denied on $path; run as its owner or a member of its group, or widen sidecast's --socket-mode" >&2
    else
        return 0
    fi
    exit 1
}

waiting=false
while true; do
    if serve; then
        echo "chat: sidecast closed the connection" >&2
        waiting=false
    elif fail_if_unusable && [ "$waiting" = false ]; then
        echo "chat: waiting for sidecast at $path" >&2
        waiting=true
    fi
    sleep 1 &
    wait $!
done
