package tracing

import (
	"encoding/hex"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// The X-Ray trace header, as EventBridge, Step Functions and SQS (the AWSTraceHeader
// system attribute) carry it:
//
//	Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1
//
// The Root's 8 hex digits of epoch seconds and 24 random ones are the 32 hex digits
// of a W3C trace id; Parent is the span id. Written here rather than taken from
// the contrib X-Ray propagator, whose module is deprecated.
const (
	xrayMaxLen     = 256 // longer than any header AWS writes (Lineage and Self included)
	xrayRootPrefix = "1-"
)

// ParseXRay returns the remote span context of an X-Ray trace header, or false when
// h is not one (no Root or Parent, malformed or zero ids, over xrayMaxLen bytes).
// Sampled=1 samples; Sampled=0, "?" (the receiver decides) or none do not. Other
// keys (Lineage, Self) are ignored.
func ParseXRay(h string) (trace.SpanContext, bool) {
	if len(h) > xrayMaxLen {
		return trace.SpanContext{}, false
	}
	var cfg trace.SpanContextConfig
	var haveRoot, haveParent bool
	for part := range strings.SplitSeq(h, ";") {
		key, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch key {
		case "Root":
			id, ok := parseXRayRoot(value)
			if !ok {
				return trace.SpanContext{}, false
			}
			cfg.TraceID, haveRoot = id, true
		case "Parent":
			if len(value) != 16 {
				return trace.SpanContext{}, false
			}
			if _, err := hex.Decode(cfg.SpanID[:], []byte(value)); err != nil || !isLowerHex(value) {
				return trace.SpanContext{}, false
			}
			haveParent = true
		case "Sampled":
			if value == "1" {
				cfg.TraceFlags = trace.FlagsSampled
			}
		}
	}
	cfg.Remote = true
	sc := trace.NewSpanContext(cfg)
	if !haveRoot || !haveParent || !sc.IsValid() {
		return trace.SpanContext{}, false
	}
	return sc, true
}

// parseXRayRoot reads "1-<8 hex>-<24 hex>".
func parseXRayRoot(v string) (trace.TraceID, bool) {
	var id trace.TraceID
	if len(v) != len(xrayRootPrefix)+8+1+24 || !strings.HasPrefix(v, xrayRootPrefix) || v[10] != '-' {
		return id, false
	}
	digits := v[2:10] + v[11:]
	if !isLowerHex(digits) {
		return id, false
	}
	if _, err := hex.Decode(id[:], []byte(digits)); err != nil {
		return id, false
	}
	return id, true
}

// isLowerHex: X-Ray and W3C ids are lower-case hex; hex.Decode also takes upper.
func isLowerHex(s string) bool {
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// FormatXRay writes sc as an X-Ray trace header; "" when sc is not valid.
func FormatXRay(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	t := sc.TraceID().String()
	sampled := "0"
	if sc.IsSampled() {
		sampled = "1"
	}
	return "Root=" + xrayRootPrefix + t[:8] + "-" + t[8:] + ";Parent=" + sc.SpanID().String() + ";Sampled=" + sampled
}
