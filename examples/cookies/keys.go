package cookies

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// maxNameInKey bounds the readable part of a key built from a person's name.
const maxNameInKey = 48

// ItemKey is the S3 key of one Map item's object: <execution>/<kind>/<index>-<name>.json.
// The index makes it unique even when names repeat; the name part keeps only
// [A-Za-z0-9-] and writes every other byte as _XX (so no "/", "." or ".." survives),
// and a long name is cut and suffixed with a hash of the whole name. The key always
// stays under "<execution>/".
func ItemKey(execution, kind string, index int, name string) string {
	return fmt.Sprintf("%s/%s/%05d-%s.json", execution, kind, index, safeName(name))
}

func safeName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	s := b.String()
	if len(s) > maxNameInKey {
		sum := sha256.Sum256([]byte(name))
		s = s[:maxNameInKey] + "-" + hex.EncodeToString(sum[:6])
	}
	if s == "" {
		s = "_"
	}
	return s
}
