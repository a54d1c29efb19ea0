// Package modbussim is a small Modbus TCP server that stands in for a PLC in
// demos, tests and benchmarks (`interlock sim modbus`). It shares no code
// with the gateway's decoder, so that each checks the other.
package modbussim

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// MBAP framing (Modbus Messaging on TCP/IP Implementation Guide V1.0b).
const (
	headerLen = 7
	minLength = 2   // unit id + function code
	maxLength = 254 // unit id + 253-byte PDU
	maxADU    = headerLen - 1 + maxLength
)

// Options configures a Server.
type Options struct {
	// Units lists the unit ids answered; requests for others are read and
	// dropped, like a device on a shared line. Empty answers every unit.
	Units []byte
	// Delay is waited before each answer, to play a slow PLC.
	Delay time.Duration
	// IdleClose closes a connection that sent no request for this long,
	// as many PLCs do (0: never).
	IdleClose time.Duration
}

// Server is a simulated PLC. Its data tables are shared by all units and
// safe for concurrent use.
type Server struct {
	units     [256]bool
	delay     time.Duration
	idleClose time.Duration

	mu       sync.RWMutex
	coils    [tableSize]bool
	discrete [tableSize]bool
	holding  [tableSize]uint16
	input    [tableSize]uint16

	requests atomic.Uint64
	paused   atomic.Bool

	connMu    sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup
}

const tableSize = 1 << 16

// New returns a server with all data zero.
func New(o Options) *Server {
	s := &Server{
		delay:     o.Delay,
		idleClose: o.IdleClose,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
	}
	for _, u := range o.Units {
		s.units[u] = true
	}
	if len(o.Units) == 0 {
		for i := range s.units {
			s.units[i] = true
		}
	}
	return s
}

// Serve accepts connections on ln until Close, serving each in its own
// goroutine. It returns nil after Close, or the accept error.
func (s *Server) Serve(ln net.Listener) error {
	s.connMu.Lock()
	if s.closed {
		s.connMu.Unlock()
		_ = ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.connMu.Unlock()
	defer func() {
		s.connMu.Lock()
		delete(s.listeners, ln)
		s.connMu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.connMu.Lock()
			closed := s.closed
			s.connMu.Unlock()
			if closed {
				return nil
			}
			return err
		}
		s.connMu.Lock()
		if s.closed {
			s.connMu.Unlock()
			_ = c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.connMu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
			s.connMu.Lock()
			delete(s.conns, c)
			s.connMu.Unlock()
			_ = c.Close()
		}()
	}
}

// Close stops every Serve, closes all connections and waits for their
// goroutines to end.
func (s *Server) Close() error {
	s.connMu.Lock()
	s.closed = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.connMu.Unlock()
	s.wg.Wait()
	return nil
}

// SetPaused makes the server keep reading requests without answering them,
// like a PLC that hangs; requests read while paused are never answered.
func (s *Server) SetPaused(p bool) { s.paused.Store(p) }

// Requests is the number of well-framed requests read, answered or not.
func (s *Server) Requests() uint64 { return s.requests.Load() }

// Holding returns holding register addr.
func (s *Server) Holding(addr uint16) uint16 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.holding[addr]
}

// SetHolding sets holding register addr.
func (s *Server) SetHolding(addr, v uint16) {
	s.mu.Lock()
	s.holding[addr] = v
	s.mu.Unlock()
}

// Input returns input register addr.
func (s *Server) Input(addr uint16) uint16 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.input[addr]
}

// SetInput sets input register addr.
func (s *Server) SetInput(addr, v uint16) {
	s.mu.Lock()
	s.input[addr] = v
	s.mu.Unlock()
}

// Coil returns coil addr.
func (s *Server) Coil(addr uint16) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.coils[addr]
}

// SetCoil sets coil addr.
func (s *Server) SetCoil(addr uint16, v bool) {
	s.mu.Lock()
	s.coils[addr] = v
	s.mu.Unlock()
}

// DiscreteInput returns discrete input addr.
func (s *Server) DiscreteInput(addr uint16) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.discrete[addr]
}

// SetDiscreteInput sets discrete input addr.
func (s *Server) SetDiscreteInput(addr uint16, v bool) {
	s.mu.Lock()
	s.discrete[addr] = v
	s.mu.Unlock()
}

// serveConn answers the requests of one connection in order. Answers are
// flushed once no complete request is waiting, so pipelined requests cost
// one write.
func (s *Server) serveConn(c net.Conn) {
	br := bufio.NewReaderSize(c, 4096)
	bw := bufio.NewWriterSize(c, 4096)
	var frame [maxADU]byte
	resp := make([]byte, 0, maxADU)
	for {
		if !frameBuffered(br) {
			if err := bw.Flush(); err != nil {
				return
			}
		}
		hdr := frame[:headerLen]
		if s.idleClose > 0 && br.Buffered() == 0 {
			if err := c.SetReadDeadline(time.Now().Add(s.idleClose)); err != nil {
				return
			}
		}
		if _, err := io.ReadFull(br, hdr); err != nil {
			return
		}
		if s.idleClose > 0 {
			if err := c.SetReadDeadline(time.Time{}); err != nil {
				return
			}
		}
		tid := binary.BigEndian.Uint16(hdr[0:])
		length := int(binary.BigEndian.Uint16(hdr[4:]))
		unit := hdr[6]
		// A broken header leaves no way to find the next frame.
		if binary.BigEndian.Uint16(hdr[2:]) != 0 || length < minLength || length > maxLength {
			return
		}
		pdu := frame[headerLen : headerLen+length-1]
		if _, err := io.ReadFull(br, pdu); err != nil {
			return
		}
		s.requests.Add(1)
		if s.paused.Load() || !s.units[unit] {
			continue
		}
		if s.delay > 0 {
			if err := bw.Flush(); err != nil {
				return
			}
			time.Sleep(s.delay)
		}
		resp = resp[:headerLen]
		resp = s.handle(resp, pdu)
		binary.BigEndian.PutUint16(resp[0:], tid)
		binary.BigEndian.PutUint16(resp[2:], 0)
		binary.BigEndian.PutUint16(resp[4:], uint16(len(resp)-headerLen+1))
		resp[6] = unit
		if _, err := bw.Write(resp); err != nil {
			return
		}
	}
}

// frameBuffered reports whether a whole request is already read, so its
// answer can share a write with the ones before it.
func frameBuffered(br *bufio.Reader) bool {
	n := br.Buffered()
	if n < headerLen {
		return false
	}
	hdr, err := br.Peek(headerLen)
	if err != nil {
		return false
	}
	return n >= headerLen-1+int(binary.BigEndian.Uint16(hdr[4:]))
}
