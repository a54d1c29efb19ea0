//go:build !unix

package modbus

import "net"

// peerClosed cannot look at a socket here: a connection the device closed
// while idle fails its next request (0x0A) and is dialed again after it.
func peerClosed(net.Conn) bool { return false }

func peerState(net.Conn) (closed, data bool) { return false, false }
