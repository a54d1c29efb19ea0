package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// BuildOptions say how BuildBundle builds and signs a bundle.
type BuildOptions struct {
	// Revision goes into the .manifest; the directory's content hash when
	// empty. Gateways carry it as the policy revision "bundle:<revision>".
	Revision string
	// SigningKeyFile signs the bundle: a PEM private key (RSA or ECDSA) or
	// a file holding an HMAC secret. The bundle is unsigned when empty.
	SigningKeyFile string
	KeyID          string // required with SigningKeyFile
	Alg            string // by default it follows the key: RS256, ES256/384/512, HS256
	Query          string // must be defined by the policy; DefaultQuery when empty
}

// Built describes a bundle that BuildBundle wrote.
type Built struct {
	Revision string   // of the .manifest
	Files    []string // the runtime files packed
	Alg      string   // of the signature; "" when unsigned
}

// BuildBundle packs the policy in dir as a gateway loads it (Rego without
// *_test.rego, data files merged by directory into one data.json) into an
// OPA bundle, signs it when asked, and writes the .tar.gz to w. The policy
// is compiled first: a bundle that every gateway would refuse is not built.
func BuildBundle(ctx context.Context, dir string, w io.Writer, opts BuildOptions) (*Built, error) {
	if opts.Query == "" {
		opts.Query = DefaultQuery
	}
	if (opts.SigningKeyFile == "") != (opts.KeyID == "") {
		return nil, errors.New("a signing key and its key id go together")
	}
	snap, err := readSnapshot(dir)
	if err != nil {
		return nil, err
	}
	if _, err := prepare(ctx, snap, opts.Query); err != nil {
		return nil, err
	}
	modules, docs, err := parseFiles(snap.files)
	if err != nil {
		return nil, err
	}
	rev := opts.Revision
	if rev == "" {
		rev = snap.rev
	}
	b := bundle.Bundle{Data: docs, Manifest: bundle.Manifest{Revision: rev}}
	b.Manifest.SetRegoVersion(ast.RegoV1)
	built := &Built{Revision: rev}
	for _, f := range snap.files {
		if path.Ext(f.rel) != ".rego" {
			built.Files = append(built.Files, f.rel)
			continue
		}
		b.Modules = append(b.Modules, bundle.ModuleFile{
			URL: "/" + f.rel, Path: "/" + f.rel, RelativePath: f.rel, Raw: f.data, Parsed: modules[f.name],
		})
		built.Files = append(built.Files, f.rel)
	}
	if opts.SigningKeyFile != "" {
		raw, err := os.ReadFile(opts.SigningKeyFile)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		if built.Alg, err = signingAlgorithm(raw, opts.Alg); err != nil {
			return nil, fmt.Errorf("signing key %s: %w", opts.SigningKeyFile, err)
		}
		sc := bundle.NewSigningConfig(opts.SigningKeyFile, built.Alg, "")
		if err := b.GenerateSignature(sc, opts.KeyID, false); err != nil {
			return nil, fmt.Errorf("signing: %w", err)
		}
	}
	if err := bundle.NewWriter(w).DisableFormat(true).Write(b); err != nil {
		return nil, err
	}
	return built, nil
}
