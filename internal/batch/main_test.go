package batch

import (
	"testing"

	"github.com/taskbridge/taskbridge/internal/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }
