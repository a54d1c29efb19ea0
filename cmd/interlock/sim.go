package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/interlock-ics/interlock/gateway/modbus/modbussim"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuasim"
)

const (
	simModbusSynopsis = "--listen ADDR [--delay D] [--units LIST] [--set ADDR=V,…]"
	simOPCUASynopsis  = "--listen opc.tcp://HOST:PORT [--security None,Basic256Sha256]"
)

func init() {
	register(command{group: "sim", name: "modbus", synopsis: simModbusSynopsis, run: cmdSimModbus,
		help: "a Modbus TCP PLC simulator for demos and tests"})
	register(command{group: "sim", name: "opcua", synopsis: simOPCUASynopsis, run: cmdSimOPCUA,
		help: "an OPC UA server simulator (PLC variables, a writable setpoint, a method) for demos and tests"})
}

func cmdSimModbus(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("sim modbus", "sim modbus "+simModbusSynopsis, stderr)
	listen := fs.String("listen", "127.0.0.1:5502", "address to listen on")
	delay := fs.Duration("delay", 0, "wait this long before each answer (a slow PLC)")
	unitList := fs.String("units", "", "comma-separated unit ids to answer (default: all)")
	set := fs.String("set", "", "initial holding registers, such as 100=1500,101=42")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *delay < 0 {
		return usageErr("sim modbus: --delay %v: want how long to wait, 0 or more", *delay)
	}
	var units []byte
	for _, f := range splitList(*unitList) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n > 255 {
			return usageErr("sim modbus: --units: %q is not a unit id (0..255)", f)
		}
		units = append(units, byte(n))
	}
	srv := modbussim.New(modbussim.Options{Units: units, Delay: *delay})
	for _, kv := range splitList(*set) {
		a, v, ok := strings.Cut(kv, "=")
		addr, err1 := strconv.ParseUint(a, 10, 16)
		val, err2 := strconv.ParseUint(v, 10, 16)
		if !ok || err1 != nil || err2 != nil {
			return usageErr("sim modbus: --set: %q is not ADDR=VALUE (both 0..65535)", kv)
		}
		srv.SetHolding(uint16(addr), uint16(val))
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "modbus simulator listening on %s (delay %s)\n", ln.Addr(), *delay)
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	err = srv.Serve(ln)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func cmdSimOPCUA(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("sim opcua", "sim opcua "+simOPCUASynopsis, stderr)
	listen := fs.String("listen", "opc.tcp://127.0.0.1:4840", "endpoint to listen on (port 0: any free port)")
	security := fs.String("security", "None", "security policies offered: None and/or Basic256Sha256 (Sign, SignAndEncrypt, self-signed certificate)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	log.SetOutput(io.Discard) // gopcua's server logs its node set import
	srv, err := opcuasim.Start(opcuasim.Options{Endpoint: *listen, SecurityPolicies: splitList(*security)})
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintf(stdout, `opcua simulator listening on %s (security %s, anonymous)
  %-20s Double, changes every 100 ms
  %-20s Double, writable
  %-20s Double
  %-20s Int32, writable
  %-20s Int32, speed of the last accepted Start
  %-20s method of %s: Start(speed Int32) -> accepted Boolean; speed > %d is Bad_OutOfRange
try: a client such as UaExpert, or node-opcua / gopcua, on %s: read the nodes above,
write Setpoint, call Start with speed 300; put interlock in front (examples/opcua) to see writes decided
`, srv.Endpoint(), strings.Join(splitList(*security), ","),
		opcuasim.NodeTemperature, opcuasim.NodeSetpoint, opcuasim.NodePressure, opcuasim.NodeCounter,
		opcuasim.NodeSpeed, opcuasim.NodeStart, opcuasim.NodePLC, opcuasim.MaxSpeed, srv.Endpoint())
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	<-ctx.Done()
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
