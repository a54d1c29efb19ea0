package channel

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"
)

// symPolicies are the symmetric crypto FuzzOpenSym picks from.
var symPolicies = [...]string{ua.SecurityPolicyURIBasic256Sha256, ua.SecurityPolicyURIAes128Sha256RsaOaep, ua.SecurityPolicyURIAes256Sha256RsaPss}

// symPair is the sealing side's and the opening side's symmetric crypto of
// one channel under policy.
func symPair(t testing.TB, policy string) (seal, open *uapolicy.EncryptionAlgorithm) {
	local, remote := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	seal, err := uapolicy.Symmetric(policy, local, remote)
	if err != nil {
		t.Fatal(err)
	}
	open, err = uapolicy.Symmetric(policy, remote, local)
	if err != nil {
		t.Fatal(err)
	}
	return seal, open
}

// sealedPlain signs (and under SignAndEncrypt encrypts) a symmetric chunk
// whose plaintext after the token id is plain exactly as given: padding
// included, valid or not. Under SignAndEncrypt plain is cut so that it and
// the signature fill whole AES blocks; sealedPlain returns what it used.
func sealedPlain(t testing.TB, plain []byte, mode ua.MessageSecurityMode, sym *uapolicy.EncryptionAlgorithm) (raw, used []byte) {
	const head = secureHeaderLen + 4
	sigLen := sym.SignatureLength()
	if mode == ua.MessageSecurityModeSignAndEncrypt {
		plain = plain[:len(plain)-(len(plain)+sigLen)%aesBlock]
	}
	b := append([]byte("MSGF\x00\x00\x00\x00\x05\x00\x00\x00\x07\x00\x00\x00"), plain...)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)+sigLen))
	sig, err := sym.Signature(b)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, sig...)
	if mode == ua.MessageSecurityModeSignAndEncrypt {
		ct, err := sym.Encrypt(b[head:])
		if err != nil {
			t.Fatal(err)
		}
		b = append(b[:head], ct...)
	}
	return b, plain
}

// validPadding is Part 6 §6.7.2.5's padding, checked independently of
// stripPadding: the last byte n, n more bytes of value n before it, and at
// least a sequence header before those.
func validPadding(p []byte) (body []byte, ok bool) {
	if len(p) == 0 {
		return nil, false
	}
	n := int(p[len(p)-1])
	if len(p) < n+1+seqHeaderLen {
		return nil, false
	}
	for _, c := range p[len(p)-n-1:] {
		if int(c) != n {
			return nil, false
		}
	}
	return p[:len(p)-n-1], true
}

// FuzzOpenSym: openSym, the check and decryption of every secured chunk a
// client sends, on chunks whose plaintext (sequence header, body, padding)
// is the fuzzer's and whose signature and encryption are right. It accepts
// exactly the chunks with valid padding and returns their body, refuses
// the others with Bad_SecurityChecksFailed, and refuses any chunk with one
// bit flipped anywhere. Run longer with:
// go test -run '^$' -fuzz FuzzOpenSym ./gateway/opcua/channel/
func FuzzOpenSym(f *testing.F) {
	plain := append(make([]byte, seqHeaderLen), readBody(7)...)
	// padded as sealSym pads: a signature of 32 bytes (HMAC-SHA256)
	pad := (aesBlock - (len(plain)+1+32)%aesBlock) % aesBlock
	padded := append(append([]byte{}, plain...), bytes.Repeat([]byte{byte(pad)}, pad+1)...)
	for pick := range byte(6) {
		f.Add(pick, uint16(0), plain)
		f.Add(pick, uint16(0), padded)
		f.Add(pick, uint16(99), padded)
	}
	var sealers, openers [len(symPolicies)]*uapolicy.EncryptionAlgorithm
	for i, policy := range symPolicies {
		sealers[i], openers[i] = symPair(f, policy)
	}
	f.Fuzz(func(t *testing.T, pick byte, flip uint16, plain []byte) {
		mode := ua.MessageSecurityModeSign
		if pick/3%2 == 1 {
			mode = ua.MessageSecurityModeSignAndEncrypt
		}
		sealer, opener := sealers[int(pick)%len(symPolicies)], openers[int(pick)%len(symPolicies)]
		raw, used := sealedPlain(t, plain, mode, sealer)
		if flip != 0 {
			bit := int(flip) - 1
			raw[bit/8%len(raw)] ^= 1 << (bit % 8)
			if _, err := openSym(raw, mode, opener); StatusOf(err) != ua.StatusBadSecurityChecksFailed {
				t.Fatalf("a chunk with a bit flipped: %v, want Bad_SecurityChecksFailed", err)
			}
			return
		}
		got, err := openSym(raw, mode, opener)
		want, ok := used, len(used) >= seqHeaderLen
		if mode == ua.MessageSecurityModeSignAndEncrypt {
			want, ok = validPadding(used)
		}
		switch {
		case err != nil && StatusOf(err) != ua.StatusBadSecurityChecksFailed:
			t.Fatalf("refused with %v, want Bad_SecurityChecksFailed", err)
		case err != nil && ok:
			t.Fatalf("a chunk with valid padding refused: plaintext %x", used)
		case err == nil && !ok:
			t.Fatalf("a chunk with invalid padding or too short taken: plaintext %x, body %x", used, got)
		case err == nil && !bytes.Equal(got, want):
			t.Fatalf("body %x, want %x", got, want)
		}
	})
}

// TestOpenSymSeeds checks that FuzzOpenSym's harness reaches both ends: a
// chunk padded as sealSym pads it opens to its body under every policy and
// mode, and one with its padding bytes changed is refused.
func TestOpenSymSeeds(t *testing.T) {
	plain := append(make([]byte, seqHeaderLen), readBody(7)...)
	for _, policy := range symPolicies {
		sealer, opener := symPair(t, policy)
		for _, mode := range []ua.MessageSecurityMode{ua.MessageSecurityModeSign, ua.MessageSecurityModeSignAndEncrypt} {
			in := plain
			if mode == ua.MessageSecurityModeSignAndEncrypt {
				pad := (aesBlock - (len(plain)+1+sealer.SignatureLength())%aesBlock) % aesBlock
				in = append(append([]byte{}, plain...), bytes.Repeat([]byte{byte(pad)}, pad+1)...)
			}
			raw, used := sealedPlain(t, in, mode, sealer)
			if got, err := openSym(raw, mode, opener); err != nil || !bytes.Equal(used, in) || !bytes.Equal(got, plain) {
				t.Fatalf("%s %v: %x, %v", policy, mode, got, err)
			}
			if mode == ua.MessageSecurityModeSignAndEncrypt {
				bad := append([]byte{}, in...)
				bad[len(bad)-2] ^= 0x40
				raw, _ := sealedPlain(t, bad, mode, sealer)
				if _, err := openSym(raw, mode, opener); StatusOf(err) != ua.StatusBadSecurityChecksFailed {
					t.Fatalf("%s: bad padding %v", policy, err)
				}
			}
		}
	}
}

// FuzzStripPadding: stripPadding against Part 6's padding read
// independently, with and without ExtraPaddingSize (the two-byte size of
// OpenSecureChannel chunks encrypted for a key over 2048 bits, which
// FuzzOpenSym does not reach): PaddingSize is the low byte, every padding
// byte equals it, ExtraPaddingSize the high byte after it.
func FuzzStripPadding(f *testing.F) {
	f.Add([]byte("body\x02\x02\x02"), false)
	f.Add(append(append([]byte("body"), bytes.Repeat([]byte{0x04}, 0x104)...), 0x04, 0x01), true)
	f.Add([]byte("body\x00\x00"), true)
	f.Fuzz(func(t *testing.T, p []byte, extra bool) {
		got, ok := stripPadding(p, extra)
		tail := 1
		if extra {
			tail = 2
		}
		wantOK := len(p) >= tail
		var size int
		if wantOK {
			size = int(p[len(p)-tail])
			if extra {
				size |= int(p[len(p)-1]) << 8
			}
			wantOK = size+tail <= len(p)
		}
		if wantOK {
			for _, c := range p[len(p)-tail-size : len(p)-tail] {
				if c != p[len(p)-tail] {
					wantOK = false
				}
			}
		}
		if ok != wantOK {
			t.Fatalf("stripPadding(%x, %v) ok %v, want %v", p, extra, ok, wantOK)
		}
		if ok && !bytes.Equal(got, p[:len(p)-tail-size]) {
			t.Fatalf("stripPadding(%x, %v) = %x, want %x", p, extra, got, p[:len(p)-tail-size])
		}
	})
}
