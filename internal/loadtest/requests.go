package loadtest

import (
	"net/http"
	"sync/atomic"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// RequestCounter counts the HTTP requests an SQS client sends, retries included:
// what a consumer costs, whichever calls it makes.
type RequestCounter struct{ n, failed atomic.Int64 }

// Count is the number of requests so far.
func (c *RequestCounter) Count() int64 { return c.n.Load() }

// Failed is the number of requests that got no answer or an answer other than 200.
func (c *RequestCounter) Failed() int64 { return c.failed.Load() }

// Apply is an sqs.Options function: sqs.NewFromConfig(cfg, counter.Apply).
func (c *RequestCounter) Apply(o *sqs.Options) {
	next := o.HTTPClient
	if next == nil {
		next = awshttp.NewBuildableClient()
	}
	o.HTTPClient = countingClient{next: next, c: c}
}

type countingClient struct {
	next sqs.HTTPClient
	c    *RequestCounter
}

func (cc countingClient) Do(r *http.Request) (*http.Response, error) {
	cc.c.n.Add(1)
	resp, err := cc.next.Do(r)
	if err != nil || resp.StatusCode != http.StatusOK {
		cc.c.failed.Add(1)
	}
	return resp, err
}
