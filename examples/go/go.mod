module sidecast.example/chat

go 1.19
