package config

import (
	"reflect"
	"strings"
	"testing"
)

// variables are the WORKER_* names, read from the struct tags, and the standard
// variables Load reads, so a new one is fuzzed without touching this file.
func variables() []string {
	var names []string
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		if tag := typ.Field(i).Tag; tag.Get("ignored") != "true" {
			names = append(names, Prefix+"_"+tag.Get("envconfig"))
		}
	}
	for _, s := range standards {
		if s.read != nil {
			names = append(names, s.name)
		}
	}
	return names
}

// FuzzLoad sets one variable to any value. Whatever the value, Load must not panic,
// and it either returns a configuration that validates, with every derived name
// filled, or an error that names the variable.
func FuzzLoad(f *testing.F) {
	for i, v := range []string{"", "0", "-1", "1s", "20s", "25h", "jobs,batch", " Jobs ", ",", "true", "maybe", "9999999999999999999", "1e3", "info", "tb-1a2b", "Big Stack", "0x10", "1.5s", "otlp,console", "grpc", "http://169.254.170.2/v4/x", "zipkin"} {
		f.Add(uint8(i), v)
	}
	names := variables()
	f.Fuzz(func(t *testing.T, which uint8, value string) {
		value = strings.ReplaceAll(value, "\x00", "") // an environment value cannot hold NUL
		name := names[int(which)%len(names)]
		t.Setenv(name, value)
		c, err := Load()
		if err != nil {
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("%s=%q: the error does not name the variable: %v", name, value, err)
			}
			return
		}
		if verr := c.Validate(); verr != nil {
			t.Fatalf("%s=%q: Load accepted a configuration that does not validate: %v", name, value, verr)
		}
		if c.EventBus == "" || c.DataBucket == "" || c.LandingBucket == "" || c.GlueJob == "" || len(c.Roles) == 0 {
			t.Fatalf("%s=%q: derived values missing: %+v", name, value, c)
		}
	})
}
