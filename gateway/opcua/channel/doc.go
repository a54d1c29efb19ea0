// Package channel is OPC UA Secure Conversation (OPC 10000-6 §6.7) over UA
// TCP: the server side for the gateway's downstream endpoint (Accept), and
// the client side for its upstream sessions (Dial).
//
// Accept runs the Hello/Acknowledge exchange and the first
// OpenSecureChannel on a connection; the returned Channel delivers decoded
// service requests (Next, or Serve around it) and sends responses (Send,
// SendFault) from any number of goroutines. Token renewals, aborted
// messages, CloseSecureChannel and protocol violations are handled inside:
// a violation is answered with an ERR message carrying the Part 6 status
// code and closes the socket.
//
// What it takes from gopcua v0.9.0, which is sound:
//   - ua: the binary codec (service decoding by type id, encoding). The
//     Read service, which a polling client sends most, has a codec of its
//     own (readcodec.go) that gives the same values and bytes without
//     gopcua's reflection: it halves the gateway's allocations per Read;
//   - uapolicy: the security policy algorithms (RSA encryption and
//     signatures, AES-CBC, HMAC, P_SHA256 key derivation, nonce lengths);
//   - uacp: the Hello, Acknowledge and Error message codecs;
//   - uasc: the header codecs (Header, AsymmetricSecurityHeader,
//     SymmetricSecurityHeader, SequenceHeader).
//
// What it replaces, and why:
//   - uacp.Listener/Conn's server handshake: it waits for the Hello without a
//     timeout, acknowledges fixed sizes instead of revising them against the
//     client's Hello, accepts a ReverseHello on a server socket and dials the
//     address it names, and closes on a bad header without an ERR message.
//     Here: HelloTimeout, negotiated buffer sizes, ERR before every close.
//   - uasc.SecureChannel's server path:
//   - it opens whatever policy and mode the OpenSecureChannel asks for, even
//     ones not offered (a None channel to a SignAndEncrypt-only server).
//     Here only Config.Offers pairs open; anything else is refused with
//     Bad_SecurityPolicyRejected or Bad_SecurityModeRejected. With
//     Config.DiscoveryOverNone a None channel may open where None is not
//     offered, but carries GetEndpoints and FindServers only (clients such as
//     node-opcua fetch the gateway certificate that way); any other request
//     on it is refused with Bad_SecurityPolicyRejected.
//   - it validates no client certificate and panics on a non-RSA one
//     (secure_channel_crypto.go). Here a missing, malformed or non-RSA
//     certificate is Bad_CertificateInvalid, a key outside the policy's
//     range Bad_CertificatePolicyCheckFailed, and trust is decided by
//     Config.ValidateClient at the opening and at every renewal.
//   - it renews a token by swapping the keys in place under the same token
//     id (secure_channel.go:784-830), which node-opcua clients do not
//     survive. Here a renewal issues a new token id with new keys; the
//     previous token stays valid for receiving, and keeps securing what is
//     sent, until the client first uses the new one (Part 4 §5.5.2, Part 6
//     §6.7.4); then it is retired. A token not renewed in its lifetime plus
//     25 % closes the channel.
//   - it leaves sockets the client closed in CLOSE-WAIT (channel_broker.go).
//     Here CloseSecureChannel or the end of the connection closes the socket
//     at once and Next returns io.EOF.
//   - it checks neither sequence numbers nor chunk limits on the way in, and
//     no limits on the way out. Here: chunks above the negotiated buffer
//     size (Bad_TcpMessageTooLarge), more chunks or bytes than MaxChunkCount
//     and MaxMessageSize (Bad_RequestTooLarge; MaxMessageSizeBeforeSession
//     until SessionActivated), incomplete requests of all channels over
//     their PartialBudget (Bad_TcpNotEnoughResources), sequence numbers that are
//     not exactly one more than the last or wrap early
//     (Bad_SequenceNumberInvalid), a wrong SecureChannelId
//     (Bad_TcpSecureChannelUnknown), unknown or expired tokens
//     (Bad_SecureChannelTokenUnknown), failed signatures or padding
//     (Bad_SecurityChecksFailed), unknown message types
//     (Bad_TcpMessageTypeInvalid). Responses are chunked to the client's
//     buffer size; one larger than the client's MaxMessageSize or
//     MaxChunkCount becomes a ServiceFault with Bad_ResponseTooLarge.
//   - its handler errors become faults with RequestHandle 0. Here a request
//     body that does not decode is answered with a ServiceFault
//     (Bad_DecodingError, Bad_ServiceUnsupported,
//     Bad_EncodingLimitsExceeded, Bad_NodeIdInvalid) carrying the request's
//     RequestHandle, and the channel goes on; the codec runs behind a
//     pre-scan of the body that refuses nesting deeper than 100, array or
//     string lengths longer than the body could hold, a NodeId identifier
//     over 4096 characters or bytes (OPC 10000-3 §8.2.4) and a body that
//     would take more than Config.MaxDecodedSize (64 MiB) decoded, and
//     behind a recover. The RequestHandle of a refused body is read without
//     decoding the rest of its header.
//
// Dial is the client side, on the same pieces (chunk.go, crypto.go,
// frame.go): Hello with our buffer limits, OpenSecureChannel at the policy
// and mode of the server's endpoint, the token renewed at 75 % of its
// lifetime, requests chunked to the server's buffer and responses put
// together within ours. It replaces gopcua's client channel, which
// allocates a buffer of the server's ReceiveBufferSize (64 KiB) for every
// message it receives and reads each message in two system calls: for a
// hop that forwards every request, most of its garbage collection. It has
// no reading goroutine either: a caller waiting for its response reads
// the connection itself, in turn with the other callers, so a lone caller
// gets its answer without a hand-over between goroutines; a watcher reads
// while nobody waits (renewals, ERR, the close) and yields the turn
// through a passed read deadline, which frameReader survives mid-chunk.
//
// Policies: None, Basic256Sha256, Aes128_Sha256_RsaOaep and
// Aes256_Sha256_RsaPss, each with Sign and SignAndEncrypt. The deprecated
// Basic128Rsa15 and Basic256 cannot be offered.
package channel
