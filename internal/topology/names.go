package topology

// Names derives the AWS resource names of one stack. Every resource of a stack is
// named after it, so several stacks (one per test, say) live side by side on one
// emulator. Terraform uses the same scheme (deploy/terraform/locals.tf).
type Names struct {
	Stack string // e.g. "taskbridge"
}

// EventBus is the custom bus the state machines and the worker put events on.
func (n Names) EventBus() string { return n.Stack }

// DataBucket holds profiles, reports, manifests and claim-checked outputs.
func (n Names) DataBucket() string { return n.Stack + "-data" }

// LandingBucket is where files land; its Object Created events feed the batcher.
func (n Names) LandingBucket() string { return n.Stack + "-landing" }

// GlueJob is the job the batcher starts.
func (n Names) GlueJob() string { return n.Stack + "-etl" }

// Queue is the SQS queue name of a logical queue.
func (n Names) Queue(logical string) string { return n.Stack + "-" + logical }

// DLQ is the dead-letter queue name of a logical queue.
func (n Names) DLQ(logical string) string { return n.Stack + "-" + logical + "-dlq" }

// Rule is the EventBridge rule that routes to a logical queue.
func (n Names) Rule(logical string) string { return n.Stack + "-" + logical }

// StateMachine is the state machine name of a logical state machine.
func (n Names) StateMachine(logical string) string { return n.Stack + "-" + logical }

// DefinitionVars are the placeholders of the ASL files, as terraform's templatefile
// gets them.
func (n Names) DefinitionVars() map[string]string {
	return map[string]string{"event_bus_name": n.EventBus()}
}
