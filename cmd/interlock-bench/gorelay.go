package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// goRelayArg runs the bench binary as a plain TCP relay written in Go
// (two goroutines per connection, io.Copy each way): what any inline hop
// written in Go costs on this machine before it does any work, beside
// haproxy's event loop.
const goRelayArg = "go-relay"

// goRelay relays every connection to listen on to target until killed.
func goRelay(listen, target string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer u.Close()
			go func() {
				io.Copy(u, c)
				u.(*net.TCPConn).CloseWrite()
			}()
			io.Copy(c, u)
		}()
	}
}

// startGoRelay runs the Go relay in front of target in a process of its
// own and returns its address.
func startGoRelay(e *env, name, target string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	addr := freeAddr()
	if err := e.startHop(name, self, goRelayArg, addr, target); err != nil {
		return "", err
	}
	if err := waitPort(addr, 30*time.Second); err != nil {
		return "", fmt.Errorf("%s at %s: %w (log in %s)", name, addr, err, e.work)
	}
	return addr, nil
}
