package config

import (
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Lookup reads one variable, as os.LookupEnv does: its value and whether it is set.
type Lookup func(key string) (value string, ok bool)

// Layered reads env (KEY=VALUE pairs, the last of a key winning) before the
// process environment: what one embedded worker of several in a process is given.
// An entry without "=" is ignored, as the process environment ignores it.
func Layered(env []string) Lookup {
	if len(env) == 0 {
		return os.LookupEnv
	}
	over := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			over[k] = v
		}
	}
	return func(key string) (string, bool) {
		if v, ok := over[key]; ok {
			return v, true
		}
		return os.LookupEnv(key)
	}
}

// process fills c's WORKER_* fields from look, with the defaults of their tags.
//
// Why not envconfig.Process: envconfig v1.4.0 reads only through its unexported
// `lookupEnv = os.LookupEnv` (env_os.go), and its field parser (processField) is
// unexported too. The ways around were os.Setenv (process-wide: two workers of one
// process would overwrite each other's settings), a fork, or reading its tags here.
// This reads the same tags (envconfig, default, ignored), so envconfig stays the
// spec and `worker config`'s usage; it parses the few kinds Config has exactly as
// processField does (TestProcessMatchesEnvconfig holds the two equal), and errors
// are envconfig's ParseError. Unlike envconfig, it never falls back to the name
// without the prefix (STACK for WORKER_STACK): another program's variable is not
// the worker's setting.
func process(c *Config, look Lookup) error {
	v := reflect.ValueOf(c).Elem()
	typ := v.Type()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Tag.Get("ignored") == "true" {
			continue
		}
		if f.Tag.Get("envconfig") == "" { // envconfig would read the field's name: say which
			panic("config: field " + f.Name + " has no envconfig tag")
		}
		key := Prefix + "_" + f.Tag.Get("envconfig")
		value, ok := look(key)
		if !ok {
			if value, ok = f.Tag.Lookup("default"); !ok || value == "" {
				continue
			}
		}
		if err := setField(v.Field(i), value); err != nil {
			return &envconfig.ParseError{KeyName: key, FieldName: f.Name, TypeName: f.Type.String(), Value: value, Err: err}
		}
	}
	return nil
}

// setField parses value into field the way envconfig's processField does, for the
// kinds Config uses; a kind it does not know is a program error.
func setField(field reflect.Value, value string) error {
	if field.Kind() == reflect.Pointer {
		p := reflect.New(field.Type().Elem())
		if err := setField(p.Elem(), value); err != nil {
			return err
		}
		field.Set(p)
		return nil
	}
	switch field.Kind() {
	case reflect.String:
		field.SetString(value)
	case reflect.Int, reflect.Int64:
		return setInt(field, value)
	case reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return err
		}
		field.SetBool(b)
	case reflect.Float64:
		x, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return err
		}
		field.SetFloat(x)
	case reflect.Slice:
		return setSlice(field, value)
	default:
		panic("config: field kind " + field.Kind().String() + " is not read; add it to setField")
	}
	return nil
}

// setInt parses value into an integer field: a time.Duration as "1m30s", other
// integers in Go's syntax (0x, 0o, 0b prefixes) within the field's size.
func setInt(field reflect.Value, value string) error {
	if field.Type() == reflect.TypeFor[time.Duration]() {
		d, err := time.ParseDuration(value)
		if err != nil {
			return err
		}
		field.SetInt(int64(d))
		return nil
	}
	n, err := strconv.ParseInt(value, 0, field.Type().Bits())
	if err != nil {
		return err
	}
	field.SetInt(n)
	return nil
}

// setSlice parses a comma-separated list into a slice field, each element as
// setField would; a blank value is an empty slice.
func setSlice(field reflect.Value, value string) error {
	sl := reflect.MakeSlice(field.Type(), 0, 0)
	if strings.TrimSpace(value) != "" {
		parts := strings.Split(value, ",")
		sl = reflect.MakeSlice(field.Type(), len(parts), len(parts))
		for i, p := range parts {
			if err := setField(sl.Index(i), p); err != nil {
				return err
			}
		}
	}
	field.Set(sl)
	return nil
}
