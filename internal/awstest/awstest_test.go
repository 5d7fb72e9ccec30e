package awstest

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

func TestMain(m *testing.M) { Main(m) }

func TestEmulatorAnswers(t *testing.T) {
	cfg := Config(t)
	client := sqs.NewFromConfig(cfg)
	name := Stack(t) + "-q"
	out, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	got, err := client.GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("get queue url: %v", err)
	}
	if aws.ToString(got.QueueUrl) != aws.ToString(out.QueueUrl) {
		t.Fatalf("queue url: got %q, want %q", aws.ToString(got.QueueUrl), aws.ToString(out.QueueUrl))
	}
}

func TestStackNamesAreUnique(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		s := Stack(t)
		if seen[s] {
			t.Fatalf("duplicate stack name %q", s)
		}
		seen[s] = true
	}
}

func TestEmulatorKindComesFromTheEnvironment(t *testing.T) {
	for _, tc := range []struct{ env, want string }{{"", Moto}, {"moto", Moto}, {"localstack", LocalStack}} {
		t.Run("env="+tc.env, func(t *testing.T) {
			t.Setenv("TASKBRIDGE_TEST_EMULATOR", tc.env)
			if got := Emulator(); got != tc.want {
				t.Fatalf("Emulator() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRequireMotoSkipsOnAnotherEmulator(t *testing.T) {
	t.Setenv("TASKBRIDGE_TEST_EMULATOR", LocalStack)
	ran := false
	t.Run("moto only", func(t *testing.T) {
		RequireMoto(t, "a moto quirk")
		ran = true
	})
	if ran {
		t.Fatal("RequireMoto let a moto-only test run on LocalStack")
	}
}
