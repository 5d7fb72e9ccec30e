package tracing

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// An AWS call under a span makes a client span that names the service, the
// operation and the client's region (issue 29.8: cloud.region was "").
func TestAWSCallSpanCarriesTheRegion(t *testing.T) {
	traced, exp := on(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("x-amzn-RequestId", "req-1")
		_, _ = w.Write([]byte(`{"QueueUrl":"http://127.0.0.1/123456789012/q"}`))
	}))
	defer srv.Close()
	cfg := aws.Config{Region: "eu-west-3", BaseEndpoint: aws.String(srv.URL), Credentials: credentials.NewStaticCredentialsProvider("k", "s", "")}
	InstrumentAWS(&cfg)
	ctx, parent := Start(traced, "handle q", "", trace.SpanKindConsumer)
	_, err := sqs.NewFromConfig(cfg).GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("q")})
	require.NoError(t, err)
	_, err = sfn.NewFromConfig(cfg).SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String("t"), Output: aws.String("{}")})
	require.NoError(t, err)
	parent.End()

	calls := map[string]map[attribute.Key]string{}
	for _, s := range exp.GetSpans() {
		if s.SpanKind == trace.SpanKindClient {
			calls[s.Name] = map[attribute.Key]string{}
			for _, a := range s.Attributes {
				calls[s.Name][a.Key] = a.Value.String()
			}
		}
	}
	for name, want := range map[string][2]string{"SQS.GetQueueUrl": {"SQS", "GetQueueUrl"}, "SFN.SendTaskSuccess": {"SFN", "SendTaskSuccess"}} {
		call := calls[name]
		require.NotNil(t, call, "a client span %s: %v", name, calls)
		require.Equal(t, "eu-west-3", call["cloud.region"], name)
		require.Equal(t, want[0], call["rpc.service"], name)
		require.Equal(t, want[1], call["rpc.method"], name)
		require.Equal(t, "req-1", call["aws.request_id"], name)
	}
}
