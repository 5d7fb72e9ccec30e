package taskbridge

import (
	"bytes"
	"context"
	"fmt"

	"github.com/taskbridge/taskbridge/internal/cli"
)

// Bootstrap runs `bootstrap --output json` for r with env over the process
// environment, as a team's `worker bootstrap` would: the stack a Run serves.
func Bootstrap(ctx context.Context, r *Registry, env []string) ([]byte, error) {
	var out, errOut bytes.Buffer
	if err := cli.Main(ctx, r.cliJobs(cli.Jobs{Env: env}), []string{"bootstrap", "--output", "json"}, &out, &errOut); err != nil {
		return nil, fmt.Errorf("bootstrap: %w\n%s", err, errOut.String())
	}
	return out.Bytes(), nil
}
