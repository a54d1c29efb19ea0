package main

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/certs"
)

const (
	certsInitSynopsis   = "certs init --pki DIR --uri URI [--host NAME,…] [--bits N] [--days N] [--org O] [--cn NAME] [--force] [--no-audit-key]"
	certsListSynopsis   = "certs list --pki DIR [--json]"
	certsTrustSynopsis  = "certs trust --pki DIR (THUMBPRINT | FILE)"
	certsRejectSynopsis = "certs reject --pki DIR THUMBPRINT"
)

func init() {
	register(command{group: "certs", name: "init", synopsis: strings.TrimPrefix(certsInitSynopsis, "certs init "), run: cmdCertsInit,
		help: "create the PKI folders (OPC 10000-12), the gateway's OPC UA application certificate and the audit signing key"})
	register(command{group: "certs", name: "list", synopsis: "--pki DIR [--json]", run: cmdCertsList,
		help: "list the own, trusted, issuer and rejected certificates"})
	register(command{group: "certs", name: "trust", synopsis: "--pki DIR (THUMBPRINT | FILE)", run: cmdCertsTrust,
		help: "trust a rejected certificate (by thumbprint) or a certificate file"})
	register(command{group: "certs", name: "reject", synopsis: "--pki DIR THUMBPRINT", run: cmdCertsReject,
		help: "move a trusted certificate to rejected (a running gateway ends the open sessions that used it)"})
}

// maxCertDays bounds --days at a hundred years, well inside what a
// time.Duration can add to now.
const maxCertDays = 36500

func pkiFlag(fs *flag.FlagSet) *string {
	return fs.String("pki", "", "the PKI directory `DIR` (OPC 10000-12 layout: own, trusted, issuer, rejected)")
}

func cmdCertsInit(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("certs init", certsInitSynopsis, stderr)
	pki := pkiFlag(fs)
	uri := fs.String("uri", "", "the gateway's ApplicationURI, such as urn:site-a:interlock (the subjectAltName URI; OPC UA clients compare it with the endpoint's)")
	var hosts listFlag
	fs.Var(&hosts, "host", "host `NAME`s and IP addresses clients reach the gateway by, for the subjectAltName; repeat or comma-separate (default: this host's name)")
	bits := fs.Int("bits", certs.DefaultKeyBits, "RSA key size in bits, 2048 to 4096")
	days := fs.Int("days", certs.DefaultDays, "validity in days, 1 to 36500")
	org := fs.String("org", "", "subject organization (default Interlock)")
	cn := fs.String("cn", "", "subject common name (default Interlock@ and the first host)")
	force := fs.Bool("force", false, "replace an existing gateway certificate and key (clients that trusted the old one must trust the new one); the audit signing key is always kept")
	noAudit := fs.Bool("no-audit-key", false, "do not create the audit signing key in own/private")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *pki == "" || *uri == "" || len(pos) > 0 {
		fs.Usage()
		return usageErr("certs init: --pki DIR and --uri URI are required")
	}
	if *bits < 2048 || *bits > 4096 {
		// the Basic256Sha256 family of security policies takes these
		return usageErr("certs init: --bits %d: want the RSA key size in bits, 2048 to 4096 (default %d)", *bits, certs.DefaultKeyBits)
	}
	if *days <= 0 || *days > maxCertDays {
		return usageErr("certs init: --days %d: want the certificate's validity in days, 1 to %d (default %d, five years)", *days, maxCertDays, certs.DefaultDays)
	}
	s, err := certs.Init(*pki, certs.InitOptions{ApplicationURI: *uri, Hosts: hosts, Organization: *org, CommonName: *cn,
		Days: *days, KeyBits: *bits, Force: *force})
	if err != nil {
		return err
	}
	der, _, err := s.Own()
	if err != nil {
		return err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	fmt.Fprintf(stdout, "PKI:          %s (folders own, trusted, issuer, rejected)\n", abs(s.Dir()))
	fmt.Fprintf(stdout, "certificate:  %s\n", s.OwnCertPath())
	fmt.Fprintf(stdout, "  subject:    %s\n  thumbprint: %s\n  uri:        %s\n  hosts:      %s\n  valid:      %s to %s\n  key:        RSA %d bits\n",
		c.Subject, certs.Thumbprint(der), *uri, strings.Join(names, ", "),
		c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), *bits)
	fmt.Fprintf(stdout, "private key:  %s (mode 0600)\n", s.OwnKeyPath())

	var auditKey string
	if !*noAudit {
		var id, pub string
		var kept bool
		auditKey, pub, id, kept, err = auditSigningKey(s)
		if err != nil {
			return err
		}
		state := "new"
		if kept {
			state = "kept the existing key"
		}
		fmt.Fprintf(stdout, "audit key:    %s (Ed25519, mode 0600, key id %s, %s)\n", auditKey, id, state)
		if _, err := os.Stat(pub); err != nil {
			fmt.Fprintf(stdout, "audit public: %s is missing: keep the public key that `interlock audit keygen` or the first `certs init` wrote\n", pub)
		} else {
			fmt.Fprintf(stdout, "audit public: %s (for `interlock audit verify --key`: keep a copy off the gateway)\n", pub)
		}
	}
	fmt.Fprintf(stdout, "\nConfiguration:\n  listeners:\n    - protocol: opcua\n      opcua:\n        pki: %s\n", abs(s.Dir()))
	if auditKey != "" {
		fmt.Fprintf(stdout, "  audit:\n    signing_key: %s\n", abs(auditKey))
	}
	fmt.Fprintf(stdout, "\nOPC UA clients must trust the gateway: give them %s.\n"+
		"Client certificates they present land in %s until trusted with `interlock certs trust --pki %s THUMBPRINT`.\n",
		s.OwnCertPath(), s.Path(certs.RejectedCertsDir), s.Dir())
	return nil
}

// auditSigningKey makes the audit checkpoint key in own/private with
// audit.GenerateSigningKey and puts its public half in own/certs, or keeps
// the key that is there: a new key would not verify the checkpoints the
// old one signed.
func auditSigningKey(s *certs.Store) (priv, pub, keyID string, kept bool, err error) {
	priv = s.Path(certs.OwnPrivateDir, audit.SigningKeyFile)
	pub = s.Path(certs.OwnCertsDir, audit.VerifyKeyFile)
	if _, err := os.Lstat(priv); err == nil {
		k, err := audit.LoadSigningKey(priv)
		if err != nil {
			return "", "", "", false, fmt.Errorf("certs init: existing audit signing key: %w", err)
		}
		return priv, pub, audit.KeyID(k.Public().(ed25519.PublicKey)), true, nil
	}
	id, privPath, pubPath, err := audit.GenerateSigningKey(s.Path(certs.OwnPrivateDir))
	if err != nil {
		return "", "", "", false, err
	}
	if err := os.Rename(pubPath, pub); err != nil {
		return "", "", "", false, fmt.Errorf("certs init: moving the audit public key to %s: %w", pub, err)
	}
	return privPath, pub, id, false, nil
}

func cmdCertsList(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("certs list", certsListSynopsis, stderr)
	pki := pkiFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON: one object per certificate")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *pki == "" || len(pos) > 0 {
		fs.Usage()
		return usageErr("certs list: --pki DIR is required")
	}
	s, err := certs.Open(*pki)
	if err != nil {
		return err
	}
	type entry struct {
		Folder         string    `json:"folder"`
		Path           string    `json:"path"`
		Subject        string    `json:"subject,omitempty"`
		Issuer         string    `json:"issuer,omitempty"`
		Thumbprint     string    `json:"thumbprint,omitempty"`
		ApplicationURI string    `json:"application_uri,omitempty"`
		NotBefore      time.Time `json:"not_before"`
		NotAfter       time.Time `json:"not_after"`
		CA             bool      `json:"ca"`
		Error          string    `json:"error,omitempty"`
	}
	var all []entry
	folders := []string{certs.OwnCertsDir, certs.TrustedCertsDir, certs.IssuerCertsDir, certs.RejectedCertsDir}
	byFolder := map[string][]certs.Info{}
	for _, f := range folders {
		infos, err := s.List(f)
		if err != nil {
			return err
		}
		byFolder[f] = infos
		for _, i := range infos {
			e := entry{Folder: f, Path: i.Path, Subject: i.Subject, Issuer: i.Issuer, Thumbprint: i.Thumbprint,
				ApplicationURI: i.ApplicationURI, NotBefore: i.NotBefore, NotAfter: i.NotAfter, CA: i.IsCA}
			if i.Err != nil {
				e.Error = i.Err.Error()
			}
			all = append(all, e)
		}
	}
	if *asJSON {
		if all == nil {
			all = []entry{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(all)
	}
	now := time.Now()
	for n, f := range folders {
		if n > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "%s (%s): %d\n", f, s.Path(f), len(byFolder[f]))
		if len(byFolder[f]) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SUBJECT\tTHUMBPRINT\tAPPLICATION URI\tNOT AFTER")
		for _, i := range byFolder[f] {
			if i.Err != nil {
				fmt.Fprintf(tw, "  (unreadable: %v)\t\t\t\n", i.Err)
				continue
			}
			subj := i.Subject
			if i.IsCA {
				subj += " [CA]"
			}
			uri := i.ApplicationURI
			if uri == "" {
				uri = "-"
			}
			after := i.NotAfter.UTC().Format("2006-01-02")
			if now.After(i.NotAfter) {
				after += " (expired)"
			} else if now.Before(i.NotBefore) {
				after += " (not yet valid)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", subj, i.Thumbprint, uri, after)
		}
		tw.Flush()
	}
	return nil
}

func cmdCertsTrust(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("certs trust", certsTrustSynopsis, stderr)
	pki := pkiFlag(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *pki == "" || len(pos) != 1 {
		fs.Usage()
		return usageErr("certs trust: --pki DIR and one THUMBPRINT (of a certificate in rejected/certs) or FILE are required")
	}
	s, err := certs.Open(*pki)
	if err != nil {
		return err
	}
	arg := pos[0]
	fi, serr := os.Stat(arg)
	isFile := serr == nil && !fi.IsDir()
	tp, isThumbprint := thumbprintArg(arg)
	switch {
	case serr == nil && fi.IsDir():
		return usageErr("certs trust: %s is a folder: name a certificate file (DER or PEM) or the thumbprint of one in %s", arg, s.Path(certs.RejectedCertsDir))
	case !isFile && !isThumbprint:
		var pe *os.PathError
		if errors.As(serr, &pe) {
			serr = pe.Err
		}
		return fmt.Errorf("certs trust: %s: %v, and it is not a thumbprint either (the hex SHA-1 of a certificate in %s, at least 8 digits of it)",
			arg, serr, s.Path(certs.RejectedCertsDir))
	}
	// Trusted already: nothing to do, and what was asked for holds. A
	// thumbprint names a rejected certificate first, so that a prefix of
	// one is never taken for a trusted one's.
	var readErr error
	var rejected []certs.Info
	if isFile {
		var c *x509.Certificate
		if c, readErr = readCertFile(arg); readErr == nil {
			tp = certs.Thumbprint(c.Raw)
		} else {
			tp = ""
		}
	} else if rejected = certsWithPrefix(s, certs.RejectedCertsDir, tp); len(rejected) == 1 {
		tp = rejected[0].Thumbprint
	}
	if t := certsWithPrefix(s, certs.TrustedCertsDir, tp); len(t) == 1 && len(rejected) <= 1 {
		if err := printMoved(stdout, "trusted already (nothing changed)", t[0].Path); err != nil {
			return err
		}
		if len(rejected) == 1 {
			fmt.Fprintf(stdout, "  a copy is in %s too; remove it if it is not wanted there\n", rejected[0].Path)
		}
		return nil
	}
	var p string
	if isFile {
		p, err = s.TrustFile(arg)
	} else {
		p, err = s.Trust(arg)
	}
	if err != nil {
		if readErr != nil {
			return fmt.Errorf("certs trust: %s: not a certificate file (DER or PEM, one certificate): %w", arg, readErr)
		}
		return err
	}
	return printMoved(stdout, "trusted", p)
}

// thumbprintArg reads an argument as a thumbprint or a prefix of one (as
// the store looks them up: at least 8 hex digits, colons allowed).
func thumbprintArg(arg string) (string, bool) {
	tp := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(arg), ":", ""))
	return tp, len(tp) >= 8 && strings.Trim(tp, "0123456789abcdef") == ""
}

// certsWithPrefix are the certificates of a folder whose thumbprint
// begins with tp (none for "").
func certsWithPrefix(s *certs.Store, folder, tp string) []certs.Info {
	if tp == "" {
		return nil
	}
	infos, _ := s.List(folder)
	var hits []certs.Info
	for _, i := range infos {
		if i.Err == nil && strings.HasPrefix(i.Thumbprint, tp) {
			hits = append(hits, i)
		}
	}
	return hits
}

// readCertFile reads the one certificate of a DER or PEM file.
func readCertFile(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	return x509.ParseCertificate(b)
}

func cmdCertsReject(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("certs reject", certsRejectSynopsis, stderr)
	pki := pkiFlag(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *pki == "" || len(pos) != 1 {
		fs.Usage()
		return usageErr("certs reject: --pki DIR and one THUMBPRINT (of a certificate in trusted/certs) are required")
	}
	s, err := certs.Open(*pki)
	if err != nil {
		return err
	}
	p, err := s.Reject(pos[0])
	if err != nil {
		return err
	}
	return printMoved(stdout, "rejected", p)
}

// printMoved names the certificate now at path.
func printMoved(stdout io.Writer, what, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return errors.New(path + ": " + err.Error())
	}
	i := certs.Describe(c)
	uri := i.ApplicationURI
	if uri == "" {
		uri = "-"
	}
	fmt.Fprintf(stdout, "%s: %s\n  subject:    %s\n  thumbprint: %s\n  uri:        %s\n  not after:  %s\n",
		what, path, i.Subject, i.Thumbprint, uri, i.NotAfter.UTC().Format(time.RFC3339))
	return nil
}
