// Package telemetry holds the worker's logging and metrics plumbing: the zap logger,
// the HTTP server for /metrics, /healthz and /readyz, readiness tracking, and log
// fields that must be written the same way everywhere.
package telemetry

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

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

// RedactedToken is what stands for a task token in a text: its hash, marked.
func RedactedToken(token string) string {
	return "<redacted token " + TokenHash(token) + ">"
}

// minCutToken is the shortest start of a token that RedactToken treats as the token
// cut off at the end of a text (a reason truncated to a size limit). Shorter starts
// are too likely to be ordinary text.
const minCutToken = 16

// RedactToken replaces every occurrence of token in text with RedactedToken, and a
// text that ends with the first minCutToken or more characters of token (cut off by
// a length limit) has that end replaced too. An error that quotes its task token
// (a job that printed its input) is shown this way in a DLQ's reason, a span's
// status and a log line: a token is a credential.
func RedactToken(text, token string) string {
	if token == "" {
		return text
	}
	mark := RedactedToken(token)
	text = strings.ReplaceAll(text, token, mark)
	for n := min(len(token)-1, len(text)); n >= minCutToken; n-- {
		if strings.HasSuffix(text, token[:n]) {
			return text[:len(text)-n] + mark
		}
	}
	return text
}
