package channel

import (
	"bufio"
	"net"
	"time"

	"github.com/gopcua/opcua/ua"
)

// refuseWait bounds how long Refuse waits for the client's Hello.
const refuseWait = time.Second

// Refuse answers a connection the server will not serve with an ERR
// message carrying code (Part 6 §7.1.5), after the client's Hello when it
// comes within a second, and closes it. The reason goes to the client as
// it is: give no detail a client should not have.
func Refuse(conn net.Conn, code ua.StatusCode, reason string) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(refuseWait))
	// The Hello is read and dropped, whatever it says: the answer is the
	// same, and a client reads an ERR only after sending its Hello.
	if _, err := readFrame(bufio.NewReaderSize(conn, readBufferSize), minBufferSize); err != nil {
		if e, ok := err.(*Error); !ok || e.Code == ua.StatusBadTimeout {
			return // gone, or silent: no one to tell
		}
	}
	if _, err := conn.Write(encodeERR(code, reason)); err != nil {
		return
	}
	linger(conn)
}
