package callback

import (
	"errors"
	"fmt"
	"testing"

	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"
)

func TestClosedCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		err    error
		code   string
		closed bool
	}{
		{name: "AWS: timed out", err: &smithy.GenericAPIError{Code: "TaskTimedOut"}, code: "TaskTimedOut", closed: true},
		{name: "moto: invalid token", err: &smithy.GenericAPIError{Code: "InvalidToken"}, code: "InvalidToken", closed: true},
		{name: "no such task, wrapped", err: fmt.Errorf("heartbeat: %w", &smithy.GenericAPIError{Code: "TaskDoesNotExist"}), code: "TaskDoesNotExist", closed: true},
		{name: "throttled", err: &smithy.GenericAPIError{Code: "ThrottlingException"}},
		{name: "no AWS answer", err: errors.New("connection reset")},
		{name: "no error", err: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, closed := ClosedCode(tc.err)
			require.Equal(t, tc.code, code)
			require.Equal(t, tc.closed, closed)
		})
	}
}
