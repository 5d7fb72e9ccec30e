package cli

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/taskbridge/taskbridge/deploy"
	"github.com/taskbridge/taskbridge/internal/bootstrap"
	"github.com/taskbridge/taskbridge/internal/config"
	"github.com/taskbridge/taskbridge/internal/telemetry"
	"github.com/taskbridge/taskbridge/internal/topology"
)

// runValidate checks the topology named by WORKER_TOPOLOGY (or the one given as an
// argument) against the registered jobs, and prints every problem. With --stack it
// reads the stack's queues too, and warns about each one under SQS's size.
func runValidate(ctx context.Context, registered Jobs, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(registered.program(), "validate", stdout, stderr)
	stack := fs.Bool("stack", false, "also read the stack's queues, DLQs and events DLQ (WORKER_STACK, on AWS_ENDPOINT_URL or AWS) and warn about each one under SQS's 1 MiB")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	args = fs.Args()
	if len(args) > 1 {
		return UsageError{fmt.Errorf("validate takes at most one topology file, got %v", args)}
	}
	// The configuration is checked as run checks it, a file given or not: validate
	// refuses what run refuses.
	cfg, err := config.LoadFrom(registered.lookup())
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	path := cfg.Topology
	if len(args) == 1 {
		path = args[0]
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
	for _, w := range topo.Warnings(dashboards()) {
		fmt.Fprintln(stdout, "warning:", w)
	}
	if *stack {
		warnings, err := stackWarnings(ctx, cfg, topo)
		if err != nil {
			return err
		}
		for _, w := range warnings {
			fmt.Fprintln(stdout, "warning:", w)
		}
	}
	_, err = fmt.Fprintf(stdout, "%s: %d queues, %d state machines: ok\n", name, len(topo.Queues), len(topo.StateMachines))
	return err
}

// stackWarnings reads the queues of topo's stack (each queue, its DLQ, the events
// DLQ) and warns about each one under SQS's size.
func stackWarnings(ctx context.Context, cfg config.Config, topo *topology.Topology) ([]string, error) {
	conns := newConnTracker()
	awsCfg, err := loadAWS(ctx, conns)
	if err != nil {
		return nil, err
	}
	s := setup{cfg: cfg, aws: awsCfg, clients: newClients(awsCfg, cfg), topo: topo, conns: conns}
	resolved, err := s.bootstrapper().Resolve(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the stack %s: %w", cfg.Stack, err)
	}
	return smallQueues(ctx, s.clients.SQS, resolved)
}

// smallQueues reads the MaximumMessageSize of every queue of a stack (each queue, its
// DLQ, the events DLQ) and warns, in the queues' order, about each one under SQS's
// limit (telemetry.SmallQueue). `status` reads the sizes with its counts instead.
func smallQueues(ctx context.Context, client queueSizeAPI, resolved bootstrap.Output) ([]string, error) {
	var urls []string
	for _, name := range resolved.QueueNames() {
		urls = append(urls, resolved.Queues[name], resolved.DLQs[name])
	}
	if resolved.EventsDLQ != "" {
		urls = append(urls, resolved.EventsDLQ)
	}
	warnings := []string{}
	for _, url := range urls {
		if url == "" {
			continue // a queue the stack lacks: Resolve said so
		}
		n, err := telemetry.MaxMessageBytes(ctx, client, url)
		if err != nil {
			return nil, err
		}
		if w := telemetry.SmallQueue(url, n); w != "" {
			warnings = append(warnings, w)
		}
	}
	return warnings, nil
}

// queueSizeAPI is the SQS call of the size reads; *sqs.Client satisfies it.
type queueSizeAPI interface {
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// dashboards are the Grafana dashboards shipped in deploy/, by file name.
func dashboards() map[string][]byte {
	out := map[string][]byte{}
	paths, _ := fs.Glob(deploy.Files, "observability/grafana/dashboards/*.json")
	for _, p := range paths {
		if b, err := fs.ReadFile(deploy.Files, p); err == nil {
			out[path.Base(p)] = b
		}
	}
	return out
}

// loadTopology reads and checks a topology: `run`, `bootstrap` and `start` refuse one
// that `validate` rejects, with the same messages.
func loadTopology(path string, registered Jobs) (*topology.Topology, error) {
	topo, err := topology.Load(path)
	if err != nil {
		return nil, err
	}
	if err := topo.Check(registered.names(), checkKind); err != nil {
		name := path
		if name == "" {
			name = "embedded topology"
		}
		return nil, fmt.Errorf("topology %s is not valid:\n%w", name, err)
	}
	return topo, nil
}
