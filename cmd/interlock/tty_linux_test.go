package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock-ics/interlock/gateway/gatewaytest"
	"github.com/interlock-ics/interlock/gateway/opcua"
)

// openPTY opens a pseudo-terminal pair through /dev/ptmx.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pty's terminal: %v", err)
	}
	return master, slave
}

// On a terminal, users add asks twice with echo off: the password never
// shows on the terminal, and two different answers write nothing.
func TestUsersAddAsksOnATerminalWithoutEcho(t *testing.T) {
	for _, tc := range []struct {
		name, first, second string
	}{
		{"same", "s3cret-pw", "s3cret-pw"},
		{"different", "s3cret-pw", "s3cret-pX"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			master, slave := openPTY(t)
			defer master.Close()
			file := filepath.Join(t.TempDir(), "users.yaml")
			var stderr gatewaytest.LogBuffer
			cmd := exec.Command(interlockBin, "users", "add", "--file", file, "--user", "alice", "--roles", "engineer")
			cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, &stderr, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var screen gatewaytest.LogBuffer
			readDone := make(chan struct{})
			go func() {
				defer close(readDone)
				b := make([]byte, 256)
				for {
					n, err := master.Read(b)
					screen.Write(b[:n])
					if err != nil {
						return
					}
				}
			}()
			// answer once the prompt is out and the terminal's echo is off
			answer := func(prompt, line string) {
				t.Helper()
				deadline := time.Now().Add(30 * time.Second)
				for {
					tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
					if err != nil {
						t.Fatalf("TCGETS: %v", err)
					}
					if strings.Contains(stderr.String(), prompt) && tio.Lflag&unix.ECHO == 0 {
						break
					}
					if time.Now().After(deadline) {
						cmd.Process.Kill()
						t.Fatalf("no prompt %q with echo off; stderr so far: %q", prompt, stderr.String())
					}
					time.Sleep(10 * time.Millisecond)
				}
				if _, err := master.Write([]byte(line + "\n")); err != nil {
					t.Fatal(err)
				}
			}
			answer("password for alice: ", tc.first)
			answer("password for alice again: ", tc.second)
			err := cmd.Wait()
			slave.Close()
			<-readDone
			if strings.Contains(screen.String(), "s3cret") {
				t.Errorf("the password was echoed on the terminal: %q", screen.String())
			}
			if tc.first == tc.second {
				if err != nil {
					t.Fatalf("users add: %v\n%s", err, stderr.String())
				}
				users, err := opcua.LoadUsers(file)
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := users.Check("alice", tc.first); !ok {
					t.Errorf("alice cannot log in with the password typed")
				}
				return
			}
			if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(stderr.String(), "do not match") {
				t.Errorf("two different passwords: exit %d, want 1 and \"do not match\"\n%s", cmd.ProcessState.ExitCode(), stderr.String())
			}
			if _, err := os.Stat(file); !os.IsNotExist(err) {
				t.Errorf("two different passwords wrote %s (%v)", file, err)
			}
		})
	}
}

// --log-format console colours a terminal only: a log file or pipe gets
// no ANSI escapes.
func TestConsoleLogColoursOnlyATerminal(t *testing.T) {
	master, slave := openPTY(t)
	defer master.Close()
	defer slave.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "gateway.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, out := range []*os.File{file, slave} {
		log, err := newLogger(out, "console", "info")
		if err != nil {
			t.Fatal(err)
		}
		log.Info().Str("listener", "plc1").Msg("gateway ready")
	}
	var b bytes.Buffer
	buf := make([]byte, 4096)
	n, _ := master.Read(buf) // the line is in the terminal's buffer already
	b.Write(buf[:n])
	if !strings.Contains(b.String(), "\x1b[") {
		t.Errorf("the console log on a terminal has no colours: %q", b.String())
	}
	text, err := os.ReadFile(file.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(text), "gateway ready") || strings.Contains(string(text), "\x1b") {
		t.Errorf("the console log in a file: %q, want the message without ANSI escapes", text)
	}
}
