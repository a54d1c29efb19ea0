// Package opcuasim is a small OPC UA server for demos and tests
// (`interlock sim opcua`): a PLC object with a changing temperature, a
// writable setpoint and counter, a pressure, and a method Start(speed).
//
// It is built on gopcua's server package, which is fine for a simulator and
// is not the enforcement point: that server does not check user identity
// tokens, so the simulator offers anonymous logins only, and it handles every
// request on one goroutine. gopcua's server has no method support; the
// simulator answers Call itself (method.go).
package opcuasim

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
)

// tick is how often Temperature changes.
const tick = 100 * time.Millisecond

// ApplicationURI is the simulator's ApplicationURI (in its certificate).
const ApplicationURI = "urn:interlock:sim:opcua"

// Options configure the simulator.
type Options struct {
	// Endpoint to listen on, opc.tcp://HOST:PORT; port 0 picks a free
	// port. Default opc.tcp://127.0.0.1:4840.
	Endpoint string
	// SecurityPolicies offered: "None" and/or "Basic256Sha256" (Sign and
	// SignAndEncrypt). Default None. Basic256Sha256 uses a self-signed
	// certificate made at start, or Certificate and PrivateKey.
	SecurityPolicies []string
	Certificate      []byte // DER
	PrivateKey       *rsa.PrivateKey
	// Logger receives gopcua's server log; nil discards it.
	Logger server.Logger
	// Aliases are more endpoint URLs (opc.tcp://HOST:PORT) the simulator
	// answers to in GetEndpoints and CreateSession, besides Endpoint: those
	// of a proxy or a port forward in front of it, which clients connect
	// to. It listens on Endpoint only.
	Aliases []string
}

// Server is a running simulator.
type Server struct {
	endpoint string
	srv      *server.Server
	ns       *plcNamespace
	cert     []byte
	cancel   context.CancelFunc
	done     chan struct{}
	once     sync.Once
}

// Start starts the simulator; Close stops it.
func Start(o Options) (*Server, error) {
	if o.Endpoint == "" {
		o.Endpoint = "opc.tcp://127.0.0.1:4840"
	}
	if len(o.SecurityPolicies) == 0 {
		o.SecurityPolicies = []string{"None"}
	}
	host, port, err := splitEndpoint(o.Endpoint)
	if err != nil {
		return nil, err
	}
	if port == 0 {
		// gopcua's server advertises the port it was given: pick one first.
		if port, err = freePort(host); err != nil {
			return nil, err
		}
	}
	opts := []server.Option{
		server.EndPoint(host, port),
	}
	for _, a := range o.Aliases {
		h, p, err := splitEndpoint(a)
		if err != nil {
			return nil, err
		}
		opts = append(opts, server.EndPoint(h, p))
	}
	opts = append(opts,
		server.EnableAuthMode(ua.UserTokenTypeAnonymous),
		server.ServerName("Interlock OPC UA simulator"),
		server.ManufacturerName("Interlock"),
		server.ProductName("interlock sim opcua"),
	)
	if o.Logger != nil {
		opts = append(opts, server.SetLogger(o.Logger))
	}
	for _, p := range o.SecurityPolicies {
		switch p {
		case "None":
			opts = append(opts, server.EnableSecurity("None", ua.MessageSecurityModeNone))
		case "Basic256Sha256":
			opts = append(opts,
				server.EnableSecurity("Basic256Sha256", ua.MessageSecurityModeSign),
				server.EnableSecurity("Basic256Sha256", ua.MessageSecurityModeSignAndEncrypt))
		default:
			return nil, fmt.Errorf("opcuasim: security policy %q is not supported (None, Basic256Sha256)", p)
		}
	}
	cert, key := o.Certificate, o.PrivateKey
	if cert == nil || key == nil {
		// gopcua's server needs a certificate for its endpoint descriptions
		// even under None; it is used for signing only when secure.
		if cert, key, err = selfSigned(host); err != nil {
			return nil, err
		}
	}
	opts = append(opts, server.Certificate(cert), server.PrivateKey(key))

	srv := server.New(opts...)
	ns := newPLCNamespace(srv)
	srv.AddNamespace(ns)
	root, err := srv.Namespace(0)
	if err != nil {
		return nil, err
	}
	root.Objects().AddRef(ns.Node(ns.plc.id), id.Organizes, true)
	calls := &methods{ns: ns}
	// Registered before Start, this handler takes the place of gopcua's,
	// which answers every Call with Bad_ServiceUnsupported.
	srv.RegisterHandler(id.CallRequest_Encoding_DefaultBinary, calls.call)

	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Start(ctx); err != nil {
		cancel()
		return nil, fmt.Errorf("opcuasim: %w", err)
	}
	s := &Server{endpoint: srv.URLs()[0], srv: srv, ns: ns, cert: cert, cancel: cancel, done: make(chan struct{})}
	go s.run(ctx)
	return s, nil
}

// run moves Temperature: a slow sine around 20 °C.
func (s *Server) run(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(tick)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			v := 20.0 + 5.0*math.Sin(float64(n)/10) + float64(n)*1e-6
			s.ns.set(NodeTemperature, ua.MustVariant(v))
		}
	}
}

// Endpoint is the URL clients connect to.
func (s *Server) Endpoint() string { return s.endpoint }

// Certificate is the simulator's application instance certificate (DER).
func (s *Server) Certificate() []byte { return s.cert }

// Value is a variable's current value (float64 or int32); nil for a node
// that is not a variable of the PLC.
func (s *Server) Value(nodeID string) any {
	v, _, ok := s.ns.get(nodeID)
	if !ok {
		return nil
	}
	return v.Value()
}

// SetValue sets a variable (float64 for the Double ones, int32 for Counter
// and Speed), as the process would.
func (s *Server) SetValue(nodeID string, v any) error {
	if _, _, ok := s.ns.get(nodeID); !ok {
		return fmt.Errorf("opcuasim: %s is not a variable of the PLC", nodeID)
	}
	nv, err := ua.NewVariant(v)
	if err != nil {
		return err
	}
	s.ns.set(nodeID, nv)
	return nil
}

// Close stops the simulator and closes its connections.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.cancel()
		err = s.srv.Close()
		<-s.done
	})
	return err
}

func splitEndpoint(endpoint string) (string, int, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "opc.tcp" || u.Hostname() == "" {
		return "", 0, fmt.Errorf("opcuasim: endpoint %q is not opc.tcp://HOST:PORT", endpoint)
	}
	p := u.Port()
	if p == "" {
		return u.Hostname(), 4840, nil
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("opcuasim: endpoint %q: bad port", endpoint)
	}
	return u.Hostname(), port, nil
}

func freePort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// selfSigned makes an application instance certificate for the simulator:
// RSA 2048, the ApplicationURI and host in the SAN, valid for a year.
func selfSigned(host string) ([]byte, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, nil, err
	}
	appURI, _ := url.Parse(ApplicationURI)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "interlock sim opcua", Organization: []string{"Interlock"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment |
			x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{appURI},
	}
	seen := map[string]bool{}
	for _, h := range []string{host, "localhost", "127.0.0.1"} {
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, errors.Join(errors.New("opcuasim: certificate"), err)
	}
	return der, key, nil
}
