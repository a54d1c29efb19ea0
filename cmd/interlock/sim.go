package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/interlock-ics/interlock/gateway/modbus/modbussim"
)

func init() {
	register(command{group: "sim", name: "modbus", synopsis: "--listen ADDR", run: cmdSimModbus,
		help: "a Modbus TCP PLC simulator for demos and tests"})
}

func cmdSimModbus(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("sim modbus", "sim modbus --listen ADDR [--delay D] [--units LIST] [--set ADDR=V,…]", stderr)
	listen := fs.String("listen", "127.0.0.1:5502", "address to listen on")
	delay := fs.Duration("delay", 0, "wait this long before each answer (a slow PLC)")
	unitList := fs.String("units", "", "comma-separated unit ids to answer (default: all)")
	set := fs.String("set", "", "initial holding registers, such as 100=1500,101=42")
	if err := parse(fs, args); err != nil {
		return err
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

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
