package report

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// ErrNoChromium is returned when no Chromium is installed to print with.
var ErrNoChromium = errors.New("no Chromium found (looked for $INTERLOCK_CHROMIUM, chromium, chromium-browser, google-chrome, " +
	"google-chrome-stable on PATH): install Debian's chromium package (scripts/install-peers.sh does), or set INTERLOCK_CHROMIUM to its path")

// FindChromium returns the Chromium binary: $INTERLOCK_CHROMIUM when set,
// else the first of the usual names on PATH.
func FindChromium() (string, error) {
	if p := os.Getenv("INTERLOCK_CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("INTERLOCK_CHROMIUM=%s: %w", p, err)
		}
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", ErrNoChromium
}

// ChromiumFlags start a headless Chromium that reaches no network service
// of its own, with a fresh profile in userDataDir. Chromium refuses to run
// as root without --no-sandbox.
func ChromiumFlags(userDataDir string) []string {
	flags := []string{
		"--headless", "--disable-gpu", "--disable-quic", "--no-first-run", "--no-default-browser-check",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
		"--user-data-dir=" + userDataDir,
	}
	if os.Geteuid() == 0 {
		flags = append(flags, "--no-sandbox")
	}
	return flags
}

// PrintPDF prints the HTML file htmlPath to pdfPath with headless
// Chromium. Its printing needs scripts on; the report's content security
// policy still runs none but its own.
func PrintPDF(ctx context.Context, htmlPath, pdfPath string) error {
	bin, err := FindChromium()
	if err != nil {
		return fmt.Errorf("--pdf: %w", err)
	}
	abs, err := filepath.Abs(htmlPath)
	if err != nil {
		return err
	}
	out, err := filepath.Abs(pdfPath)
	if err != nil {
		return err
	}
	profile, err := os.MkdirTemp("", "interlock-pdf-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(profile)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tmp := out + ".tmp"
	args := append(ChromiumFlags(profile),
		"--no-pdf-header-footer",
		"--print-to-pdf="+tmp,
		(&url.URL{Scheme: "file", Path: abs}).String())
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	runErr := cmd.Run()
	b, _ := os.ReadFile(tmp)
	if runErr != nil || !bytes.HasPrefix(b, []byte("%PDF-")) {
		os.Remove(tmp)
		msg := runErr
		if msg == nil {
			msg = errors.New("it wrote no PDF")
		}
		return fmt.Errorf("--pdf: %s: %v\n%s", bin, msg, lastLines(stderr.Bytes(), 5))
	}
	return os.Rename(tmp, out)
}

func lastLines(b []byte, n int) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte("\n"))
}
