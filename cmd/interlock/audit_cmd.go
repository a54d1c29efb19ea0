package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/interlock-ics/interlock/audit"
)

const verifySynopsis = "[--key PUB] [--max-unsigned N] [--max-unsigned-age D] [--checkpoints FILE] [--after HASH] [--json] (--log PATH | FILE…)"

func init() {
	register(command{group: "audit", name: "verify", synopsis: verifySynopsis, run: cmdAuditVerify,
		help: "check the hash chain across rotated files, the signed checkpoints and the unsigned tail; exit 1 naming the first break"})
	register(command{group: "audit", name: "keygen", synopsis: "--out DIR", run: cmdAuditKeygen,
		help: "make an Ed25519 key pair for signing audit checkpoints; print its key id"})
}

func cmdAuditVerify(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("audit verify", "audit verify "+verifySynopsis, stderr)
	keyPath := fs.String("key", "", "public key `PUB` (PEM) the checkpoints must be signed with, made by interlock audit keygen")
	maxUnsigned := fs.Int("max-unsigned", 0, "`N` records allowed after the last checkpoint (0: that checkpoint's own checkpoint_every; -1: no limit)")
	maxAge := fs.Duration("max-unsigned-age", 0, "time `D` allowed from the first record after the last checkpoint to the end (0: that checkpoint's own checkpoint_interval; -1s: no limit; no other negative)")
	cpFile := fs.String("checkpoints", "", "checkpoint records kept off the gateway, in a JSONL `FILE` such as a SIEM's copy: the log must hold each record they cover, and must not end before it")
	after := fs.String("after", "", "the first file continues a log whose last record has this `HASH` (a log kept in parts)")
	logPath := fs.String("log", "", "verify the whole log whose live file is `PATH`: its rotated files beside it (gzipped ones decompressed), then PATH")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	files := fs.Args()
	switch {
	case *maxUnsigned < -1:
		return usageErr("audit verify: --max-unsigned %d: want a count, 0 (the checkpoint's own) or -1 (no limit)", *maxUnsigned)
	case *maxAge < 0 && *maxAge != -time.Second:
		// Only the documented -1s means no limit: another negative is a
		// typo (-5m for 5m) that would turn the check off unnoticed.
		return usageErr("audit verify: --max-unsigned-age %s: want a duration, 0 (the checkpoint's own checkpoint_interval) or -1s (no limit)", *maxAge)
	case *logPath != "" && len(files) > 0:
		return usageErr("audit verify: give --log PATH or files, not both")
	case *logPath != "":
		var err error
		if files, err = verifyFiles(*logPath); err != nil {
			return err
		}
		if len(files) == 0 {
			return fmt.Errorf("audit verify: no audit log at %s", *logPath)
		}
		if err := liveFileThere(*logPath, files); err != nil {
			return err
		}
	case len(files) == 0:
		fs.Usage()
		return usageErr("audit verify: name the log (--log PATH) or at least one audit log file")
	}
	if *after != "" {
		// A record hash is SHA-256 in hex; anything else is a typo, not a
		// break of the log.
		if b, err := hex.DecodeString(*after); err != nil || len(b) != sha256.Size {
			return usageErr("audit verify: --after %q: want a record's hash, 64 hex digits (the \"hash\" of the last record of the part before)", *after)
		}
		*after = strings.ToLower(*after)
	}
	opts := audit.VerifyOptions{MaxUnsigned: *maxUnsigned, MaxUnsignedAge: *maxAge, After: *after}
	if *logPath != "" {
		opts.Live = files[len(files)-1]
	}
	if *keyPath != "" {
		k, err := audit.LoadVerifyKey(*keyPath)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			msg := strings.TrimPrefix(err.Error(), *keyPath+": ")
			if !strings.Contains(msg, audit.VerifyKeyFile) {
				msg += " (want the Ed25519 public key in PEM that `interlock audit keygen` or `certs init` wrote, " + audit.VerifyKeyFile + ")"
			}
			return fmt.Errorf("audit verify: --key %s: %s", *keyPath, msg)
		}
		opts.Key = k
	}
	if *cpFile != "" {
		if opts.Key == nil {
			return usageErr("audit verify: --checkpoints needs --key")
		}
		cps, err := readCheckpoints(*cpFile, logGateway(files))
		if err != nil {
			return fmt.Errorf("audit verify: --checkpoints: %w", err)
		}
		opts.Checkpoints = cps
	}
	rep, err := audit.VerifyLog(files, opts)
	// A rotation (or retention) while the files were read looks like a
	// missing file: while the files changed, read them again.
	for try := 0; *logPath != "" && err != nil && try < 5; try++ {
		again, lerr := verifyFiles(*logPath)
		if lerr != nil || len(again) == 0 || slices.Equal(again, files) {
			break
		}
		files, opts.Live = again, again[len(again)-1]
		rep, err = audit.VerifyLog(files, opts)
	}
	var br *audit.Break
	if err != nil && !errors.As(err, &br) {
		return err
	}
	switch {
	case *asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(rep); jerr != nil {
			return jerr
		}
	case br == nil:
		fmt.Fprintf(stdout, "ok: %s\n", rep)
	}
	if !*asJSON {
		for _, n := range rep.Notes {
			fmt.Fprintf(stdout, "note: %s\n", n.Message)
		}
	}
	if br != nil {
		return &exitError{code: 1, msg: br.Message}
	}
	return nil
}

// logGateway is the gateway id of a log's first record, "" when it cannot
// be read.
func logGateway(files []string) string {
	if len(files) == 0 {
		return ""
	}
	f, err := audit.OpenLogFile(files[0]) // a rotated file may be gzipped
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var r struct {
		Gateway string `json:"gateway"`
	}
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &r) != nil {
		return ""
	}
	return r.Gateway
}

// readCheckpoints reads the audit.checkpoint records of gateway (all when
// "") from a JSONL file; other lines are skipped, so a whole copy of the log
// will do, or a SIEM's file of several gateways' records, with or without
// a syslog header before each record.
func readCheckpoints(path, gateway string) ([]audit.Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var cps []audit.Checkpoint
	others := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"event":"`+audit.EventCheckpoint+`"`)) {
			continue
		}
		if i := bytes.Index(line, []byte(`{"seq":`)); i > 0 {
			line = line[i:] // a syslog header before the record
		}
		c, err := audit.ParseCheckpoint(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		if gateway != "" && c.Gateway != gateway {
			others++
			continue
		}
		cps = append(cps, c)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(cps) == 0 {
		if others > 0 {
			return nil, fmt.Errorf("%s: no audit.checkpoint records of gateway %s (%d of other gateways)", path, gateway, others)
		}
		return nil, fmt.Errorf("%s: no audit.checkpoint records", path)
	}
	return cps, nil
}

func cmdAuditKeygen(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("audit keygen", "audit keygen --out DIR", stderr)
	out := fs.String("out", "", "directory `DIR` for "+audit.SigningKeyFile+" (private, mode 0600) and "+audit.VerifyKeyFile+" (public)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return usageErr("audit keygen: --out DIR is required")
	}
	id, priv, pub, err := audit.GenerateSigningKey(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "key id:      %s\nprivate key: %s (mode 0600: set audit.signing_key to it; it never leaves the gateway)\n"+
		"public key:  %s (for `interlock audit verify --key`: keep a copy off the gateway)\n", id, priv, pub)
	return nil
}

// liveFileThere fails when the rotated files of the log at path are there
// but its live file is not: the newest records of the log are missing. A
// rotation renames the live file and creates the next one at once, so one
// look again a moment later tells a rotation from a missing file.
func liveFileThere(path string, files []string) error {
	for range 2 {
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if files[len(files)-1] == path+audit.NextSuffix {
			return nil // a rotation cut short: the live file is under its next name
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &exitError{code: 1, msg: fmt.Sprintf(
		"audit verify: %s: the live file is missing, but %s of its log %s beside it: the newest records of the log are gone",
		path, audit.Plural(len(files), "rotated file"), audit.Noun(len(files), "is", "are"))}
}

// verifyFiles are the files of the log whose live file is path, in chain
// order, for verify --log: the rotated ones (gzipped too), the live file, and
// after it the next file of a rotation a crash cut short (the gateway
// renames it over the live name at its next start).
func verifyFiles(path string) ([]string, error) {
	files, err := audit.LogFilesWithGzip(path)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path + audit.NextSuffix); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
		files = append(files, path+audit.NextSuffix)
	}
	return files, nil
}

// outOverInput refuses an output file that is one of the audit files read:
// writing it would destroy the evidence being read, and a gateway writing
// that log would go on into a file no longer there.
func outOverInput(cmd, flag, out string, inputs []string) error {
	fo, err := os.Stat(out)
	if err != nil {
		return nil // not there yet: no input is it
	}
	for _, in := range inputs {
		if fi, err := os.Stat(in); err == nil && os.SameFile(fi, fo) {
			return usageErr("%s: %s %s is the audit log %s it reads: write elsewhere", cmd, flag, out, in)
		}
	}
	return nil
}
