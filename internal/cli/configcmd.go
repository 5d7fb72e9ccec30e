package cli

import (
	"io"

	"github.com/taskbridge/taskbridge/internal/config"
)

func runConfig(stdout io.Writer) error { return config.Usage(stdout) }
