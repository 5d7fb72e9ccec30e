// Package telemetry holds the worker's logging and metrics plumbing: the zap logger,
// the HTTP server for /metrics, /healthz and /readyz, readiness tracking, and log
// fields that must be written the same way everywhere.
package telemetry

import (
	"crypto/sha256"
	"encoding/hex"

	"go.uber.org/zap"
)

// TokenHash is a short, stable fingerprint of a task token for logs: task tokens are
// credentials and are never logged whole. The same token always gives the same hash,
// so the lines of one task can still be followed.
func TokenHash(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

// Token is the log field for a task token: its hash under the key token_hash; no
// field (zap.Skip) when there is no token, so a line carries no empty value.
func Token(token string) zap.Field {
	if token == "" {
		return zap.Skip()
	}
	return zap.String("token_hash", TokenHash(token))
}
