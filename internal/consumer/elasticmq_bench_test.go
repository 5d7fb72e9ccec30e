//go:build elasticmq

package consumer_test

import (
	"context"
	"net/http"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// BenchmarkConsumerAgainstElasticMQ is BenchmarkConsumerAgainstEmulator on ElasticMQ,
// a faster SQS server, with ten times the messages: there the consumers, not the
// server, set the pace. `make bench-elasticmq` installs and starts the server.
func BenchmarkConsumerAgainstElasticMQ(b *testing.B) {
	endpoint := os.Getenv("TASKBRIDGE_ELASTICMQ_ENDPOINT")
	if endpoint == "" {
		b.Fatal("TASKBRIDGE_ELASTICMQ_ENDPOINT is not set: run make bench-elasticmq")
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64        // as many as the consumers keep busy
	b.Cleanup(transport.CloseIdleConnections) // the server outlives this binary's leak check
	cfg := aws.Config{
		Region: "us-east-1", BaseEndpoint: aws.String(endpoint), HTTPClient: &http.Client{Transport: transport},
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}
	if _, err := cfg.Credentials.Retrieve(context.Background()); err != nil {
		b.Fatal(err)
	}
	benchConsumers(b, cfg, 10*benchMessages, "elasticmq", nil)
}
