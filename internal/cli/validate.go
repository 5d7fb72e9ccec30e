package cli

import (
	"fmt"
	"io"

	"github.com/taskbridge/taskbridge/internal/config"
	"github.com/taskbridge/taskbridge/internal/topology"
)

// runValidate checks the topology named by WORKER_TOPOLOGY (or the one given as an
// argument) against the registered jobs, and prints every problem.
func runValidate(registered Jobs, args []string, stdout io.Writer) error {
	if len(args) > 1 {
		return UsageError{fmt.Errorf("validate takes at most one topology file, got %v", args)}
	}
	path := ""
	if len(args) == 1 {
		path = args[0]
	} else {
		cfg, err := config.Load()
		if err != nil {
			return fmt.Errorf("configuration:\n%w", err)
		}
		path = cfg.Topology
	}
	topo, err := loadTopology(path, registered)
	if err != nil {
		return err
	}
	name := topo.Path
	if name == "" {
		name = "embedded topology"
		fmt.Fprintln(stdout, "WORKER_TOPOLOGY is not set: checking the embedded topology (the cookies flow)")
	}
	_, err = fmt.Fprintf(stdout, "%s: %d queues, %d state machines: ok\n", name, len(topo.Queues), len(topo.StateMachines))
	return err
}

// loadTopology reads and checks a topology: `run`, `bootstrap` and `start` refuse one
// that `validate` rejects, with the same messages.
func loadTopology(path string, registered Jobs) (*topology.Topology, error) {
	topo, err := topology.Load(path)
	if err != nil {
		return nil, err
	}
	if err := topo.Check(registered.names()); err != nil {
		name := path
		if name == "" {
			name = "embedded topology"
		}
		return nil, fmt.Errorf("topology %s is not valid:\n%w", name, err)
	}
	return topo, nil
}
