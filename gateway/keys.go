package gateway

// Names shared by the policy input and the audit record (ARCHITECTURE.md,
// "Contract: policy" and "Contract: audit record"). Both are contracts: a
// name here changes only with a note on the issue.
const (
	KeyTime      = "time"
	KeyGateway   = "gateway"
	KeyListener  = "listener"
	KeySession   = "session"
	KeySource    = "source"
	KeyPrincipal = "principal"
	KeyTarget    = "target"
	KeyProtocol  = "protocol"
	KeyOperation = "operation"

	KeyID             = "id"
	KeyStarted        = "started"
	KeySecurityPolicy = "security_policy"
	KeySecurityMode   = "security_mode"
	KeyResumed        = "resumed" // OPC UA: the times the session moved to a new secure channel, when it did

	KeyIP    = "ip"
	KeyPort  = "port"
	KeyName  = "name"
	KeyOwner = "owner"

	KeyUser           = "user"
	KeyAuth           = "auth"
	KeyRoles          = "roles"
	KeyCertThumbprint = "cert_thumbprint"
	KeyApplicationURI = "application_uri"

	KeyUpstream = "upstream"
	KeyUnitID   = "unit_id"

	KeyFunction = "function"
	KeyAccess   = "access"

	// Operation fields used by more than one protocol or by the core.
	KeyCode     = "code"
	KeyAddress  = "address"
	KeyQuantity = "quantity"
	KeyValues   = "values"
)

// FunctionSessionOpen is the operation.function of the decision taken when a
// session opens.
const FunctionSessionOpen = "session.open"

// FunctionSessionAuthFailed is the event of a failed login.
const FunctionSessionAuthFailed = "session.auth_failed"
