package topology

import "strings"

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

// EventsDLQ is the stack's dead-letter queue of every rule target: the events
// EventBridge could not deliver to a queue.
func (n Names) EventsDLQ() string { return n.DLQ(EventsDLQName) }

// Rule is the EventBridge rule that routes to a logical queue.
func (n Names) Rule(logical string) string { return n.Stack + "-" + logical }

// StateMachine is the state machine name of a logical state machine.
func (n Names) StateMachine(logical string) string { return n.Stack + "-" + logical }

// DefinitionVars are the placeholders of the ASL files, as terraform's templatefile
// gets them.
func (n Names) DefinitionVars(partition string) map[string]string {
	return map[string]string{"event_bus_name": n.EventBus(), "partition": partition}
}

// Partition is the AWS partition of a region: "aws", "aws-cn", "aws-us-gov".
func Partition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	case strings.HasPrefix(region, "us-iso-"):
		return "aws-iso"
	case strings.HasPrefix(region, "us-isob-"):
		return "aws-iso-b"
	case strings.HasPrefix(region, "eu-isoe-"):
		return "aws-iso-e"
	default:
		return "aws"
	}
}

// StateMachineARN is the ARN of a state machine, built rather than listed: the
// worker needs no List* permission (ListStateMachines takes no resource scope).
func StateMachineARN(partition, region, account, name string) string {
	return "arn:" + partition + ":states:" + region + ":" + account + ":stateMachine:" + name
}
