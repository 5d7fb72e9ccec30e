package config

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// Tracing is what the standard OTEL_* variables that the worker reads itself say;
// the OpenTelemetry SDK reads the others (endpoint, headers, resource, sampler,
// batching) on its own.
type Tracing struct {
	// Exporters are OTEL_TRACES_EXPORTER's names (otlp, console), lowercase, "none"
	// left out; empty, tracing is off: unset, none, or OTEL_SDK_DISABLED=true.
	Exporters []string
	// OTLPProtocol is OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else
	// OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf.
	OTLPProtocol string
}

// standard is a variable of a standard name (not WORKER_*), listed by `worker
// config`. read, when set, keeps its value; a variable without it is read by the
// SDK its default names, and is listed for completeness.
type standard struct {
	name, def, desc string
	read            func(e *standardEnv, value string)
}

// standardEnv is the standard variables as read, before Load makes a Config of them.
type standardEnv struct {
	agentURI, exporters, sdkDisabled, otlpProtocol, otlpTracesProtocol string
}

// standards is the one list of the standard variables: Load reads them with it,
// Usage prints it.
var standards = []standard{
	{name: "AWS_REGION", def: "(AWS SDK)", desc: "region of every AWS call"},
	{name: "AWS_ENDPOINT_URL", def: "(AWS SDK)", desc: "one endpoint for every service, e.g. a local emulator (http://127.0.0.1:5000)"},
	{name: "AWS_ACCESS_KEY_ID, ...", def: "(AWS SDK)", desc: "credentials, by the SDK's default chain (env, profile, ECS task role)"},
	{name: "ECS_AGENT_URI", def: "(set by ECS)", desc: "the agent endpoint where the worker holds task scale-in protection while jobs run; unset: no protection",
		read: func(e *standardEnv, v string) { e.agentURI = v }},
	{name: "OTEL_TRACES_EXPORTER", def: "none", desc: "where spans go: otlp, console, none, or a comma-separated list; none or unset: tracing off",
		read: func(e *standardEnv, v string) { e.exporters = v }},
	{name: "OTEL_SDK_DISABLED", def: "false", desc: "true turns tracing off whatever OTEL_TRACES_EXPORTER says",
		read: func(e *standardEnv, v string) { e.sdkDisabled = v }},
	{name: "OTEL_EXPORTER_OTLP_PROTOCOL", def: "http/protobuf", desc: "the OTLP transport: http/protobuf or grpc",
		read: func(e *standardEnv, v string) { e.otlpProtocol = v }},
	{name: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", def: "", desc: "the OTLP transport of traces, over OTEL_EXPORTER_OTLP_PROTOCOL",
		read: func(e *standardEnv, v string) { e.otlpTracesProtocol = v }},
	{name: "OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, ...", def: "(OTel SDK)", desc: "where OTLP sends, its headers, timeout, TLS, as the OTLP exporters define them"},
	{name: "OTEL_SERVICE_NAME, ...", def: "(OTel SDK)", desc: "the resource (OTEL_RESOURCE_ATTRIBUTES too); service.name defaults to taskbridge-worker"},
	{name: "OTEL_TRACES_SAMPLER[_ARG]", def: "(OTel SDK)", desc: "sampling (default parentbased_always_on); OTEL_BSP_* tune the batch span processor"},
}

// readStandard fills c's standard variables from the environment.
func (c *Config) readStandard() {
	var e standardEnv
	for _, s := range standards {
		if v, ok := os.LookupEnv(s.name); ok && s.read != nil {
			s.read(&e, v)
		}
	}
	c.ECSAgentURI = strings.TrimSpace(e.agentURI)
	c.Tracing = Tracing{OTLPProtocol: "http/protobuf"}
	if !strings.EqualFold(strings.TrimSpace(e.sdkDisabled), "true") {
		c.Tracing.Exporters = exporterNames(e.exporters)
	}
	for _, p := range []string{e.otlpTracesProtocol, e.otlpProtocol} {
		if p = strings.TrimSpace(p); p != "" {
			c.Tracing.OTLPProtocol = p
			break
		}
	}
}

// exporterNames reads OTEL_TRACES_EXPORTER; none means no exporter.
func exporterNames(v string) []string {
	var names []string
	for n := range strings.SplitSeq(v, ",") {
		if n = strings.ToLower(strings.TrimSpace(n)); n != "" && n != "none" {
			names = append(names, n)
		}
	}
	return names
}

// validateStandard reports the wrong values of the standard variables the worker
// reads itself, each naming its variable.
func (c Config) validateStandard() []error {
	var errs []error
	for _, n := range c.Tracing.Exporters {
		if n != "otlp" && n != "console" {
			errs = append(errs, fmt.Errorf("OTEL_TRACES_EXPORTER: unknown exporter %q (want none, otlp or console)", n))
		}
	}
	if p := c.Tracing.OTLPProtocol; slices.Contains(c.Tracing.Exporters, "otlp") && p != "http/protobuf" && p != "grpc" {
		errs = append(errs, fmt.Errorf("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL: unknown protocol %q (want http/protobuf or grpc)", p))
	}
	if u := c.ECSAgentURI; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		errs = append(errs, fmt.Errorf("ECS_AGENT_URI: must be an http URL, got %q", u))
	}
	return errs
}
