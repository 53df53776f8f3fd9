// The backlog of the server's listening socket.
//
// Debian's cpp-httplib (0.11, a compiled library) listens with a backlog of 5 that a header macro
// cannot change. Agent clients open many connections at once (a tool loop's sub-agents, a
// benchmark's streams): on a machine with many cores, 16 connections arriving together overflow
// that queue, the kernel drops some of them for a retransmission to pick up later, and a client
// may see its connection fail. listen() on a socket that is already listening sets its backlog
// anew, so the server raises it right after binding.
#pragma once

namespace kvstash::server {

// Raises the backlog of this process's listening TCP socket on `port` to SOMAXCONN. Returns
// whether it found that socket.
bool raise_listen_backlog(int port);

}  // namespace kvstash::server
