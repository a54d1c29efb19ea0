package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Key files written by GenerateSigningKey, in the directory it is given.
const (
	SigningKeyFile = "audit-signing.key" // Ed25519 private key, PKCS #8 PEM, mode 0600
	VerifyKeyFile  = "audit-signing.pub" // its public key, PKIX PEM, mode 0644
)

// KeyID names a checkpoint key: the first 16 hex digits of the SHA-256 of
// the 32-byte Ed25519 public key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// GenerateSigningKey writes a new Ed25519 key pair into dir (created if
// needed) as SigningKeyFile and VerifyKeyFile, refusing to overwrite either,
// and returns the key id and both paths.
func GenerateSigningKey(dir string) (keyID, privPath, pubPath string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", "", fmt.Errorf("audit: generating a key: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", "", "", fmt.Errorf("audit: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", "", "", fmt.Errorf("audit: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", "", fmt.Errorf("audit: %w", err)
	}
	privPath, pubPath = filepath.Join(dir, SigningKeyFile), filepath.Join(dir, VerifyKeyFile)
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", "", fmt.Errorf("audit: %s exists: not overwriting a key (move it away first)", p)
		}
	}
	if err := writeNewFile(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return "", "", "", err
	}
	if err := writeNewFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		os.Remove(privPath) // a private key without its public half is no use
		return "", "", "", err
	}
	return KeyID(pub), privPath, pubPath, nil
}

// writeNewFile creates path (never an existing file) with exactly mode,
// whatever the umask, and fsyncs it.
func writeNewFile(path string, b []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("audit: writing %s: %w", path, err)
	}
	return nil
}

// CheckKeyFileMode refuses a private key file that anyone but its owner
// may read or write: the key signs the log's checkpoints.
func CheckKeyFileMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("audit signing key %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("audit signing key %s is open to group or others (mode %04o): make it private with chmod 600 %s", path, perm, path)
	}
	return nil
}

// LoadSigningKey reads an Ed25519 private key (PKCS #8 PEM, as
// GenerateSigningKey writes it), refusing a file open to group or others.
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	if err := CheckKeyFileMode(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("audit signing key %s: no PEM PRIVATE KEY block (make one with `interlock audit keygen`)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("audit signing key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("audit signing key %s: a %T, not an Ed25519 key", path, k)
	}
	return priv, nil
}

// LoadVerifyKey reads an Ed25519 public key (PKIX PEM, as
// GenerateSigningKey writes it).
func LoadVerifyKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: not a PEM file", path)
	}
	if blk.Type == "PRIVATE KEY" {
		return nil, errors.New(path + ": a private key; verify with the public key (" + VerifyKeyFile + ")")
	}
	if blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s: a PEM %s block, want PUBLIC KEY", path, blk.Type)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, not an Ed25519 key", path, k)
	}
	return pub, nil
}
