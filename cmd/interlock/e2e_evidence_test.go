package main

// Audit evidence end to end: logs written by a running gateway with signed
// checkpoints, rotated several times and restarted (cleanly and after a
// kill), tampered with in every way `interlock audit verify` must catch;
// and the audit directory on a small tmpfs that fills up.

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
)

// withAudit replaces the audit section of the gateway's configuration.
func (g *gw) withAudit(t *testing.T, section string) {
	t.Helper()
	b, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	const plain = "audit:\n  path: ./audit/audit.jsonl\n"
	if !bytes.Contains(b, []byte(plain)) {
		t.Fatalf("no audit section to replace in %s", g.config)
	}
	writeFile(t, g.config, strings.Replace(string(b), plain, plain+section, 1))
}

// auditKeygen runs `interlock audit keygen --out dir` and returns the key
// id and the public key file.
func auditKeygen(t *testing.T, dir string) (string, string) {
	t.Helper()
	r := interlock(t, "audit", "keygen", "--out", dir)
	m := regexp.MustCompile(`(?m)^key id:\s+([0-9a-f]{16})$`).FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("audit keygen: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for name, mode := range map[string]os.FileMode{"audit-signing.key": 0o600, "audit-signing.pub": 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v, mode %v, want %v", name, err, fi.Mode().Perm(), mode)
		}
	}
	return m[1], filepath.Join(dir, "audit-signing.pub")
}

// mbpollReads runs n one-shot reads of two registers through the gateway.
func mbpollReads(t *testing.T, port, n int) {
	t.Helper()
	for range n {
		if r := mbpoll(t, port, []string{"-r", "100", "-c", "2"}); r.code != 0 {
			t.Fatalf("read: exit %d\n%s", r.code, r.out)
		}
	}
}

// ---- a forger's tools, written from the contract in audit/doc.go ----

// auditLines is a copy of a log's files, line by line, in chain order.
type auditLines struct {
	live  string
	files []string
	lines [][]string // per file, each line with its newline
}

var (
	seqRe      = regexp.MustCompile(`^\{"seq":(\d+),`)
	tailRe     = regexp.MustCompile(`,"prev":"([0-9a-f]{64})","hash":"([0-9a-f]{64})"\}\n$`)
	rotatedRe  = regexp.MustCompile(`"previous_first_seq":\d+,"previous_last_seq":\d+`)
	cpObjectRe = regexp.MustCompile(`"checkpoint":\{"seq":(\d+),"hash":"[0-9a-f]{64}","time":"([^"]+)","boot_id":"([^"]+)","key_id":"([0-9a-f]+)","reason":"([a-z]+)","every":(\d+),"interval_ms":(\d+)\},"signature":"[^"]+"`)
)

// copyAuditLog copies the log directory of live into a new directory.
func copyAuditLog(t *testing.T, live string) *auditLines {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Dir(live))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		copyFile(t, filepath.Join(filepath.Dir(live), e.Name()), filepath.Join(dir, e.Name()))
	}
	a := &auditLines{live: filepath.Join(dir, filepath.Base(live))}
	a.files = logFiles(t, a.live)
	for _, f := range a.files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ls := strings.SplitAfter(string(b), "\n")
		a.lines = append(a.lines, ls[:len(ls)-1])
	}
	return a
}

// logFiles lists a log's files with `interlock audit verify --log`'s order:
// the rotated files by the seq in their names, then the live file.
func logFiles(t *testing.T, live string) []string {
	t.Helper()
	dir, base := filepath.Split(live)
	stem := strings.TrimSuffix(base, ".jsonl")
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(stem) + `-\d{8}T\d{6}Z-(\d+)\.jsonl$`)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	type f struct {
		path string
		seq  int
	}
	var rotated []f
	for _, e := range entries {
		if m := re.FindStringSubmatch(e.Name()); m != nil {
			n, _ := strconv.Atoi(m[1])
			rotated = append(rotated, f{filepath.Join(dir, e.Name()), n})
		}
	}
	for i := range rotated { // few files: insertion sort
		for j := i; j > 0 && rotated[j].seq < rotated[j-1].seq; j-- {
			rotated[j], rotated[j-1] = rotated[j-1], rotated[j]
		}
	}
	var out []string
	for _, r := range rotated {
		out = append(out, r.path)
	}
	return append(out, live)
}

// find returns the first line, from file fromFile on, for which match holds.
func (a *auditLines) find(t *testing.T, fromFile int, match func(string) bool) (int, int) {
	t.Helper()
	for fi := fromFile; fi < len(a.lines); fi++ {
		for li, l := range a.lines[fi] {
			if match(l) {
				return fi, li
			}
		}
	}
	t.Fatalf("no such record from file %d on", fromFile)
	return 0, 0
}

func hasAll(parts ...string) func(string) bool {
	return func(l string) bool {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				return false
			}
		}
		return true
	}
}

// renumber gives every record consecutive seqs from 1 and fixes what
// audit.rotated says of the file before it.
func (a *auditLines) renumber() {
	seq, prevFirst, prevLast := 0, 0, 0
	for fi := range a.lines {
		first := 0
		for li, l := range a.lines[fi] {
			seq++
			if first == 0 {
				first = seq
			}
			l = seqRe.ReplaceAllString(l, fmt.Sprintf(`{"seq":%d,`, seq))
			if li == 0 && strings.Contains(l, `"event":"audit.rotated"`) {
				l = rotatedRe.ReplaceAllString(l, fmt.Sprintf(`"previous_first_seq":%d,"previous_last_seq":%d`, prevFirst, prevLast))
			}
			a.lines[fi][li] = l
		}
		prevFirst, prevLast = first, seq
	}
}

// reseal recomputes prev and hash of every record from file fi, line li on
// (doc.go: hash is the SHA-256 of the line without its hash field); sign,
// when set, re-signs each checkpoint on the way to cover its new prev.
func (a *auditLines) reseal(t *testing.T, fi, li int, sign func(line, prev string) string) {
	t.Helper()
	prev := strings.Repeat("0", 64)
	if li > 0 {
		prev = tailRe.FindStringSubmatch(a.lines[fi][li-1])[2]
	} else if fi > 0 {
		ls := a.lines[fi-1]
		prev = tailRe.FindStringSubmatch(ls[len(ls)-1])[2]
	}
	for ; fi < len(a.lines); fi, li = fi+1, 0 {
		for ; li < len(a.lines[fi]); li++ {
			l := a.lines[fi][li]
			m := tailRe.FindStringSubmatchIndex(l)
			if m == nil {
				t.Fatalf("not a record: %q", l)
			}
			body := l[:m[0]] + `,"prev":"` + prev + `"`
			if sign != nil && strings.Contains(body, `"event":"audit.checkpoint"`) {
				body = sign(body, prev)
			}
			sum := sha256.Sum256([]byte(body + "}"))
			prev = hex.EncodeToString(sum[:])
			a.lines[fi][li] = body + `,"hash":"` + prev + `"}` + "\n"
		}
	}
}

// signWith re-signs a checkpoint as covering prev with priv under keyID,
// over the bytes doc.go defines.
func signWith(t *testing.T, priv ed25519.PrivateKey, keyID string) func(string, string) string {
	return func(body, prev string) string {
		m := cpObjectRe.FindStringSubmatch(body)
		g := regexp.MustCompile(`"gateway":"([^"]*)"`).FindStringSubmatch(body)
		if m == nil || g == nil {
			t.Fatalf("not a checkpoint: %s", body)
		}
		seq, tm, boot, reason, every, interval := m[1], m[2], m[3], m[5], m[6], m[7]
		msg := "interlock-audit-checkpoint-v1\ngateway=" + g[1] + "\nseq=" + seq + "\nhash=" + prev + "\ntime=" + tm +
			"\nboot_id=" + boot + "\nkey_id=" + keyID + "\nreason=" + reason + "\nevery=" + every + "\ninterval_ms=" + interval + "\n"
		sig := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte(msg)))
		obj := fmt.Sprintf(`"checkpoint":{"seq":%s,"hash":"%s","time":"%s","boot_id":"%s","key_id":"%s","reason":"%s","every":%s,"interval_ms":%s},"signature":"%s"`,
			seq, prev, tm, boot, keyID, reason, every, interval, sig)
		return cpObjectRe.ReplaceAllLiteralString(body, obj)
	}
}

func loadPrivateKey(t *testing.T, path string) ed25519.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(ed25519.PrivateKey)
}

// write writes the files back; a file without lines is deleted.
func (a *auditLines) write(t *testing.T) {
	t.Helper()
	for i, f := range a.files {
		if a.lines[i] == nil {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
			continue
		}
		writeFile(t, f, strings.Join(a.lines[i], ""))
	}
}

// ---- the tests ----

// A gateway with signed checkpoints every 10 records and a 6 KiB rotation
// writes a log over three runs: stopped cleanly, then killed, then stopped
// cleanly. The untouched log verifies and reports both restarts; each kind
// of tampering makes `interlock audit verify --key … --log …` exit 1 with
// one line naming the file and record.
func TestE2EAuditEvidenceTamper(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	_, _, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port})
	keyID, pub := auditKeygen(t, filepath.Join(g.dir, "keys"))
	if r := interlock(t, "audit", "keygen", "--out", filepath.Join(g.dir, "keys")); r.code != 1 || !strings.Contains(r.stderr, "not overwriting") {
		t.Errorf("a second keygen into the same directory: exit %d, %s", r.code, r.stderr)
	}
	g.withAudit(t, `  signing_key: ./keys/audit-signing.key
  checkpoint_every: 10
  checkpoint_interval: 2s
  rotate_size: 6KiB
`)
	g.start(t)
	mbpollReads(t, g.port, 10)
	if r := mbpoll(t, g.port, []string{"-r", "100"}, "5"); r.code == 0 || !strings.Contains(r.out, "Illegal function") {
		t.Fatalf("write outside a window: exit %d, want it denied\n%s", r.code, r.out)
	}
	if code := g.stopGateway(t); code != 0 {
		t.Fatalf("the gateway exited %d on SIGTERM", code)
	}
	g.start(t)
	mbpollReads(t, g.port, 8)
	g.proc.kill()
	g.start(t)
	mbpollReads(t, g.port, 8)
	if code := g.stopGateway(t); code != 0 {
		t.Fatalf("the gateway exited %d on SIGTERM", code)
	}

	files := logFiles(t, g.auditPath)
	if len(files) < 5 {
		t.Fatalf("%d files: want several rotations", len(files))
	}
	r := interlock(t, "audit", "verify", "--key", pub, "--log", g.auditPath)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ok: ") {
		t.Fatalf("verify of the untouched log: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	t.Logf("verify of the untouched log:\n%s", r.stdout)
	for _, want := range []string{
		fmt.Sprintf("in %d files, seq 1 to", len(files)), "signed by key id " + keyID, "3 gateway starts",
		"note: ", "restart: boot ", "stopped cleanly (shutdown checkpoint at seq", "restart after an unclean stop: boot ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("verify output lacks %q:\n%s", want, r.stdout)
		}
	}
	// The checkpoints as a SIEM keeps them, off the gateway.
	var offBox []string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, l := range strings.SplitAfter(string(b), "\n") {
			if strings.Contains(l, `"event":"audit.checkpoint"`) {
				offBox = append(offBox, l)
			}
		}
	}
	offBoxFile := filepath.Join(t.TempDir(), "siem-checkpoints.jsonl")
	writeFile(t, offBoxFile, strings.Join(offBox, ""))

	// A SIEM's file holds the records of several gateways, each line after
	// a syslog header: the checkpoints of the other gateways (here with
	// the same seqs, other hashes and no valid signature) are not this
	// log's.
	gwID := regexp.MustCompile(`"gateway":"([^"]+)"`).FindStringSubmatch(offBox[0])[1]
	var siem []string
	for _, l := range offBox {
		const header = "<134>1 2026-11-27T21:00:00Z siem-host interlock - - - "
		other := strings.ReplaceAll(l, `"gateway":"`+gwID+`"`, `"gateway":"other-gw"`)
		other = regexp.MustCompile(`"hash":"[0-9a-f]{64}"`).ReplaceAllString(other, `"hash":"`+strings.Repeat("ab", 32)+`"`)
		siem = append(siem, header+l, header+other)
	}
	siemFile := filepath.Join(t.TempDir(), "siem-all.log")
	writeFile(t, siemFile, strings.Join(siem, ""))
	if r := interlock(t, "audit", "verify", "--key", pub, "--checkpoints", siemFile, "--log", g.auditPath); r.code != 0 {
		t.Errorf("verify with the checkpoints of a SIEM of two gateways: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	attackerDir := filepath.Join(t.TempDir(), "attacker")
	attackerID, _ := auditKeygen(t, attackerDir)
	attacker := loadPrivateKey(t, filepath.Join(attackerDir, "audit-signing.key"))
	call := hasAll(`"event":"call"`)
	mid := len(files) / 2

	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, a *auditLines) (fi, li int, want string)
		extra  []string // more verify flags
	}{
		{"one byte changed", func(t *testing.T, a *auditLines) (int, int, string) {
			fi, li := a.find(t, mid, call)
			a.lines[fi][li] = strings.Replace(a.lines[fi][li], `"quantity":2`, `"quantity":3`, 1)
			return fi, li, "hash does not match the record"
		}, nil},
		{"one record deleted", func(t *testing.T, a *auditLines) (int, int, string) {
			fi, li := a.find(t, mid, call)
			a.lines[fi] = append(a.lines[fi][:li:li], a.lines[fi][li+1:]...)
			return fi, li, "records were deleted"
		}, nil},
		{"a rotated file deleted from the middle", func(t *testing.T, a *auditLines) (int, int, string) {
			gone := filepath.Base(a.files[mid])
			a.lines[mid] = nil
			return mid + 1, 0, "continues " + gone
		}, nil},
		{"the live file truncated", func(t *testing.T, a *auditLines) (int, int, string) {
			// Its last records, the shutdown checkpoint among them, cut
			// at a record boundary; its first record stays.
			n := len(a.lines) - 1
			a.lines[n] = a.lines[n][:max(1, len(a.lines[n])-3)]
			return n, len(a.lines[n]) - 1, "cut off its end"
		}, []string{"--checkpoints", offBoxFile}},
		{"the live file cut mid-record", func(t *testing.T, a *auditLines) (int, int, string) {
			n := len(a.lines) - 1
			last := a.lines[n][len(a.lines[n])-1]
			a.lines[n][len(a.lines[n])-1] = last[:len(last)/2]
			return n, len(a.lines[n]) - 1, "cut mid-record"
		}, nil},
		{"two records swapped", func(t *testing.T, a *auditLines) (int, int, string) {
			fi, li := a.find(t, mid, call)
			a.lines[fi][li], a.lines[fi][li+1] = a.lines[fi][li+1], a.lines[fi][li]
			return fi, li, "out of order"
		}, nil},
		{"the denied write made allowed, checkpoints forged with another key", func(t *testing.T, a *auditLines) (int, int, string) {
			fi, li := a.find(t, 0, hasAll(`"event":"call"`, `"function":"write_single_register"`, `"allow":false`))
			a.lines[fi][li] = strings.Replace(a.lines[fi][li], `"allow":false`, `"allow":true`, 1)
			a.reseal(t, fi, li, signWith(t, attacker, attackerID))
			cfi, cli := fi, li+1
			for !strings.Contains(a.lines[cfi][cli], `"event":"audit.checkpoint"`) {
				if cli++; cli == len(a.lines[cfi]) {
					cfi, cli = cfi+1, 0
				}
			}
			return cfi, cli, "signed with key id " + attackerID
		}, nil},
		{"checkpoints after a restart removed, beyond the unsigned tail allowed", func(t *testing.T, a *auditLines) (int, int, string) {
			// From the checkpoint the last run opened with, every later
			// checkpoint goes and the chain is rewritten; the 11th record
			// after it is one more than checkpoint_every allows.
			var fi, li int
			for f := range a.lines {
				for l, line := range a.lines[f] {
					if strings.Contains(line, `"reason":"open"`) {
						fi, li = f, l
					}
				}
			}
			var at [2]int
			n := 0
			for f := fi; f < len(a.lines); f++ {
				var kept []string
				for l, line := range a.lines[f] {
					after := f > fi || l > li
					if after && strings.Contains(line, `"event":"audit.checkpoint"`) {
						continue
					}
					kept = append(kept, line)
					if after {
						if n++; n == 11 {
							at = [2]int{f, len(kept) - 1}
						}
					}
				}
				a.lines[f] = kept
			}
			a.renumber()
			a.reseal(t, fi, li+1, nil)
			return at[0], at[1], "more than the 10 allowed"
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := copyAuditLog(t, g.auditPath)
			fi, li, want := tc.tamper(t, a)
			a.write(t)
			args := append([]string{"audit", "verify", "--key", pub}, tc.extra...)
			r := interlock(t, append(args, "--log", a.live)...)
			msg := strings.TrimSpace(r.stderr)
			if r.code != 1 {
				t.Fatalf("verify: exit %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			t.Logf("verify: %s", msg)
			where := fmt.Sprintf("%s:%d (seq ", a.files[fi], li+1)
			if !strings.Contains(msg, where) || !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
				t.Errorf("verify said\n  %s\nwant one line naming %s… and %q", msg, where, want)
			}
		})
	}
}

// mountTmpfs mounts a tmpfs of size on dir until the test ends, or skips
// (fails under INTERLOCK_REQUIRE_PEERS=1) where mounting is not allowed.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs on %s (%v: %s): the disk-full test needs root or CAP_SYS_ADMIN", dir, err, bytes.TrimSpace(out))
		if os.Getenv("INTERLOCK_REQUIRE_PEERS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v: %s; detaching it", dir, err, out)
			exec.Command("umount", "-l", dir).Run()
		}
	})
}

// fillTo writes a filler file that brings the filesystem of dir to about
// pct percent full.
func fillTo(t *testing.T, dir string, pct float64) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	total := float64(st.Blocks) * float64(st.Bsize)
	used := float64(st.Blocks-st.Bfree) * float64(st.Bsize)
	n := int(total*pct/100 - used)
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, bytes.Repeat([]byte{'x'}, n), 0o644); err != nil {
		t.Fatal(err)
	}
	return filler
}

// readWithoutRecord is the gateway's log line of a read forwarded while
// the audit log cannot take records (reads_on_failure: alert).
func readWithoutRecord(l map[string]any) bool {
	return l["message"] == "audit log cannot take the call record: read forwarded without it"
}

// fillAuditWithReads reads through g as fast as mbpoll polls (10 ms) until
// the audit log on the small filesystem of auditDir is full, then takes
// whatever room the last failed write left with a file it returns, so that
// no smaller record slips in.
func fillAuditWithReads(t *testing.T, g *gw, auditDir string) string {
	t.Helper()
	poller := startProc(t, "mbpoll (fast)", filepath.Join(t.TempDir(), "mbpoll.log"), nil, "mbpoll",
		"-m", "tcp", "-a", "1", "-0", "-l", "10", "-r", "0", "-c", "10", "-o", mbpollTimeout, "-p", strconv.Itoa(g.port), "127.0.0.1")
	g.waitLog(t, 60*time.Second, "a read forwarded without its record", readWithoutRecord)
	poller.kill()
	topUp := filepath.Join(auditDir, "top-up")
	if f, err := os.Create(topUp); err == nil {
		for _, err = f.Write(make([]byte, 512)); err == nil; _, err = f.Write(make([]byte, 64)) {
		}
		f.Close()
	}
	return topUp
}

// The live audit file deleted to make room on a full disk: the gateway
// lets go of the deleted file's blocks, begins a new live file that says
// the records before it are gone (audit.rotated live_file_missing, which
// verify reports), and state-changing calls are allowed again without a
// restart.
func TestE2EAuditLiveFileDeletedOnFullDisk(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	v100, _, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port})
	g.withAudit(t, "  capacity_interval: 100ms\n")
	g.setWindows(t, openWindow("CHG-E2E-DELETED"))
	auditDir := filepath.Dir(g.auditPath)
	mountTmpfs(t, auditDir, "256k")
	g.start(t)
	fillAuditWithReads(t, g, auditDir)
	w1 := v100 + 1
	if r := mbpoll(t, g.port, []string{"-r", "100"}, strconv.Itoa(w1)); r.code == 0 {
		t.Fatalf("a write on a full disk was allowed\n%s", r.out)
	}
	if err := os.Remove(g.auditPath); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, 200*time.Millisecond, "a write allowed once the live file is deleted", func() (bool, string) {
		r := mbpoll(t, g.port, []string{"-r", "100"}, strconv.Itoa(w1))
		return r.code == 0, r.out
	})
	if got := plcRegisters(t, plc.port, 100, 1)[0]; got != w1 {
		t.Errorf("PLC register 100 = %d, want %d", got, w1)
	}
	if code := g.stopGateway(t); code != 0 {
		t.Errorf("the gateway exited %d on SIGTERM", code)
	}
	recs := readAudit(t, g.auditPath)
	if len(recs) == 0 || recs[0].str("event") != "audit.rotated" || recs[0].str("reason") != "live_file_missing" {
		t.Fatalf("the new live file does not begin with audit.rotated live_file_missing: %v", recs[:min(len(recs), 2)])
	}
	r := interlock(t, "audit", "verify", "--log", g.auditPath)
	if r.code != 1 || !strings.Contains(r.stderr, "live_file_missing") {
		t.Errorf("verify after the live file was deleted: exit %d, want 1 reporting the loss\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// The audit directory on a 512 KiB tmpfs that fills up: the capacity
// warning comes first; when full, a write is refused (the PLC keeps its
// value) and reads go on with an alert in the operational log; the log
// verifies as it is; once a filler file is deleted, writes are allowed again
// and the whole chain verifies.
func TestE2EAuditDiskFull(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	v100, _, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port})
	_, pub := auditKeygen(t, filepath.Join(g.dir, "keys"))
	g.withAudit(t, `  signing_key: ./keys/audit-signing.key
  checkpoint_every: 20
  checkpoint_interval: 1s
  warn_fill_percent: 85
  capacity_interval: 100ms
`)
	g.setWindows(t, openWindow("CHG-E2E-DISKFULL")) // writes are allowed while the log takes them
	auditDir := filepath.Dir(g.auditPath)
	mountTmpfs(t, auditDir, "512k")
	filler := fillTo(t, auditDir, 75)
	g.start(t)

	w1 := v100 + 1
	if r := mbpoll(t, g.port, []string{"-r", "100"}, strconv.Itoa(w1)); r.code != 0 {
		t.Fatalf("a write with room on the disk: exit %d\n%s", r.code, r.out)
	}
	if got := plcRegisters(t, plc.port, 100, 1)[0]; got != w1 {
		t.Fatalf("PLC register 100 = %d after the write, want %d", got, w1)
	}

	topUp := fillAuditWithReads(t, g, auditDir)

	// Full: a write is refused and the PLC keeps its value; a read goes on.
	if r := mbpoll(t, g.port, []string{"-r", "100"}, strconv.Itoa(w1+1)); r.code == 0 || !strings.Contains(r.out, "Illegal function") {
		t.Errorf("a write on a full disk: exit %d, want it refused\n%s", r.code, r.out)
	}
	if got := plcRegisters(t, plc.port, 100, 1)[0]; got != w1 {
		t.Errorf("PLC register 100 = %d after a write on a full disk, want %d (unchanged)", got, w1)
	}
	before := 0
	for _, l := range g.logLines() {
		if readWithoutRecord(l) {
			before++
		}
	}
	if r := mbpoll(t, g.port, []string{"-r", "100"}); r.code != 0 || r.values[100] != w1 {
		t.Errorf("a read on a full disk: exit %d, values %v, want %d\n%s", r.code, r.values, w1, r.out)
	}
	var lines []map[string]any
	eventually(t, 10*time.Second, 25*time.Millisecond, "an alert for the read", func() (bool, string) {
		lines = g.logLines()
		n := 0
		for _, l := range lines {
			if readWithoutRecord(l) {
				n++
			}
		}
		return n > before, fmt.Sprintf("%d alerts", n)
	})
	// The warning came before the first failure, in the operational log and
	// in the audit log.
	warned, failed := -1, -1
	for i, l := range lines {
		msg, _ := l["message"].(string)
		if warned < 0 && strings.Contains(msg, "the audit filesystem is filling up") {
			warned = i
		}
		if failed < 0 && (strings.HasPrefix(msg, "audit log cannot take") || msg == "audit record not written") {
			failed = i
		}
	}
	if warned < 0 || failed < 0 || warned > failed {
		t.Errorf("the capacity warning is line %d of the operational log, the first audit failure line %d", warned, failed)
	}
	recs := readAudit(t, g.auditPath)
	caps := eventsOf(recs, "audit.capacity")
	if len(caps) == 0 || caps[0].str("state") != "warning" || caps[0].num("fill_percent") < 85 || caps[0].num("warn_fill_percent") != 85 {
		t.Errorf("audit.capacity records: %v", caps)
	}
	// What is on the full disk verifies (the gateway is still running).
	if r := interlock(t, "audit", "verify", "--key", pub, "--log", g.auditPath); r.code != 0 {
		t.Errorf("verify of the full log: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Room again: writes are allowed and the chain goes on.
	for _, f := range []string{filler, topUp} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	w2 := w1 + 2
	eventually(t, 10*time.Second, 100*time.Millisecond, "a write allowed once there is room", func() (bool, string) {
		r := mbpoll(t, g.port, []string{"-r", "100"}, strconv.Itoa(w2))
		return r.code == 0, r.out
	})
	if got := plcRegisters(t, plc.port, 100, 1)[0]; got != w2 {
		t.Errorf("PLC register 100 = %d, want %d", got, w2)
	}
	waitAudit(t, g.auditPath, 10*time.Second, "audit.capacity back to ok", func(recs []record) bool {
		caps := eventsOf(recs, "audit.capacity")
		return len(caps) > 0 && caps[len(caps)-1].str("state") == "ok"
	})
	if code := g.stopGateway(t); code != 0 {
		t.Errorf("the gateway exited %d on SIGTERM", code)
	}
	r := interlock(t, "audit", "verify", "--key", pub, "--log", g.auditPath)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ok: ") {
		t.Fatalf("verify after the disk had room again: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	recs = readAudit(t, g.auditPath)
	var w2Call record
	for _, c := range callRecords(recs, "write_single_register", 100) {
		if ints := c.ints("operation.values"); len(ints) == 1 && ints[0] == w2 {
			w2Call = c
		}
	}
	if w2Call == nil || w2Call.get("decision.allow") != true || resultOf(recs, w2Call.str("call_id")).str("status") != "ok" {
		t.Errorf("the write after the disk had room: %v", w2Call)
	}
	if caps := eventsOf(recs, "audit.capacity"); len(caps) < 2 || caps[len(caps)-1].str("state") != "ok" {
		t.Errorf("audit.capacity records after the filler went: %v", caps)
	}
	// The records refused while the disk was full are counted in the log.
	if wf := eventsOf(recs, "audit.write_failed"); len(wf) == 0 || wf[0].num("records_lost") < 2 || wf[0].str("since") == "" ||
		!strings.Contains(wf[0].str("error"), "no space left") || wf[0].num("seq") > w2Call.num("seq") {
		t.Errorf("audit.write_failed records: %v", wf)
	}
	if last := recs[len(recs)-1]; last.str("event") != "audit.checkpoint" || last.str("checkpoint.reason") != "shutdown" {
		t.Errorf("the log ends with %s, not the shutdown checkpoint", last)
	}
}

// The gateway of a log whose oldest file is gzipped is read from it
// decompressed: verify --checkpoints keeps only that gateway's checkpoints.
func TestLogGatewayOfAGzippedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit-20261127T000000Z-000000000000001.jsonl.gz")
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write([]byte(`{"seq":1,"time":"2026-11-27T00:00:00Z","event":"gateway.start","gateway":"gw-x","prev":"0","hash":"0"}` + "\n"))
	zw.Close()
	writeFile(t, path, z.String())
	if got := logGateway([]string{path}); got != "gw-x" {
		t.Errorf("logGateway of a gzipped file: %q, want gw-x", got)
	}
}

// audit verify --log on a log a crash left between a rotation's two
// renames (before the gateway's next start completes it): the new live
// file under its next name is read as the live file, and the log verifies.
func TestAuditVerifyRotationCutByACrash(t *testing.T) {
	dir := t.TempDir()
	_, priv, pub, err := audit.GenerateSigningKey(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := audit.LoadSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "audit", "audit.jsonl")
	w, err := audit.Open(audit.Options{Path: live, Gateway: "gw", SigningKey: key, BootID: "b1", CheckpointEvery: 5, RotateSize: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if err := w.Record("gateway.start", true, func(e *zerolog.Event) { e.Int("n", i) }); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	if err := os.Rename(live, live+audit.NextSuffix); err != nil {
		t.Fatal(err)
	}
	r := interlock(t, "audit", "verify", "--key", pub, "--log", live)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ok: ") {
		t.Errorf("verify --log with the live file under its next name: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}
