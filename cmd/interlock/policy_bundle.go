package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/interlock-ics/interlock/policy"
)

func init() {
	register(command{group: "policy", name: "bundle",
		synopsis: "build DIR --out FILE.tar.gz [--revision R] [--signing-key FILE --key-id ID] [--signing-alg ALG]",
		run:      cmdPolicyBundle,
		help:     "build (and sign) an OPA bundle of a policy directory for gateways to pull"})
}

const bundleBuildSynopsis = "policy bundle build DIR --out FILE.tar.gz [--revision R] [--signing-key FILE --key-id ID] [--signing-alg ALG]"

func cmdPolicyBundle(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "build" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprintf(stdout, "Usage: interlock %s\n", bundleBuildSynopsis)
			return flag.ErrHelp
		}
		fmt.Fprintf(stderr, "Usage: interlock %s\n", bundleBuildSynopsis)
		return usageErr("policy bundle: want the build command")
	}
	fs := newFlags("policy bundle build", bundleBuildSynopsis, stderr)
	out := fs.String("out", "", "the bundle file to write (.tar.gz)")
	revision := fs.String("revision", "", "manifest revision (default: the directory's content hash); gateways record it as bundle:REVISION")
	key := fs.String("signing-key", "", "sign with this key: a PEM private key (RSA or ECDSA) or a file holding an HMAC secret")
	keyID := fs.String("key-id", "", "the key id gateways verify the signature with (policy.bundle_key_id); required with --signing-key")
	alg := fs.String("signing-alg", "", "signature algorithm (RS256, PS256, ES256, HS256 …; default follows the key)")
	dirs, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	switch {
	case len(dirs) != 1:
		fs.Usage()
		return usageErr("policy bundle build: give one policy directory")
	case *out == "":
		fs.Usage()
		return usageErr("policy bundle build: --out FILE.tar.gz is required")
	case (*key == "") != (*keyID == ""):
		return usageErr("policy bundle build: --signing-key and --key-id go together")
	case *alg != "" && *key == "":
		return usageErr("policy bundle build: --signing-alg needs --signing-key")
	}
	var buf bytes.Buffer
	built, err := policy.BuildBundle(context.Background(), dirs[0], &buf, policy.BuildOptions{
		Revision: *revision, SigningKeyFile: *key, KeyID: *keyID, Alg: *alg,
	})
	if err != nil {
		return fmt.Errorf("policy bundle build: %w", err)
	}
	// Write and rename: a server publishing the file never serves half a bundle.
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".bundle-*.tar.gz")
	if err != nil {
		return fmt.Errorf("policy bundle build: cannot write --out %s: %w", *out, errors.Unwrap(err))
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	signed := "unsigned"
	if built.Alg != "" {
		signed = fmt.Sprintf("signed %s, key id %s", built.Alg, *keyID)
	}
	fmt.Fprintf(stdout, "%s: revision %s%s, %s, %d bytes: %s\n", *out, policy.BundleRevisionPrefix, built.Revision, signed,
		buf.Len(), strings.Join(built.Files, " "))
	return nil
}

// parseInterleaved parses flags that may follow positional arguments
// (`build DIR --out FILE`) and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
