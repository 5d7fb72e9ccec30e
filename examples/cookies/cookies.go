// Package cookies is the reference workflow of taskbridge, built on its public API
// like any user's jobs: getMultiple returns a list of names; a Map runs
// processSingle per name (writes a profile, presigns it, hands the token forward
// in a processSinglePost event); postProcessSingle reads the profile through the
// presigned URL, adds numberOfCookiesConsumed and completes the item; sideEffect
// consumes the same event from its own queue and only emits one; postProcessAll
// reads every stored person of the execution and writes the report
// <execution>/0-cookies.json to the data bucket.
//
// Every object an execution writes stays under "<execution name>/", and a job
// proves its token is live (a heartbeat) before it writes anything: a producer on
// the bus is not trusted.
package cookies

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"

	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/taskbridge/taskbridge"
)

// Job names, as the topology binds them to queues.
const (
	GetMultiple       = "getMultiple"
	ProcessSingle     = "processSingle"
	PostProcessSingle = "postProcessSingle"
	SideEffect        = "sideEffect"
	PostProcessAll    = "postProcessAll"
)

// Detail types the jobs emit.
const (
	ProcessSinglePost = "processSinglePost"
	SideEffectDone    = "sideEffectDone"
)

// MaxPeople bounds {"count": N} and {"names": [...]}, and what a report reads.
const MaxPeople = 10000

// maxReportBytes bounds the stored people one report reads.
const maxReportBytes = 64 << 20

// S3 is what the jobs call of S3; *s3.Client implements it.
type S3 interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// Presigner makes the presigned GET URL of a profile; *s3.PresignClient implements it.
type Presigner interface {
	PresignGetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
}

// Fetcher fetches a presigned URL; URLGuard implements it.
type Fetcher interface {
	Fetch(ctx context.Context, url string) ([]byte, error)
}

// Deps are the jobs' dependencies.
type Deps struct {
	DataBucket string
	S3         S3
	Presigner  Presigner
	Fetcher    Fetcher
	PresignTTL time.Duration // default 15 min
}

// Jobs holds the dependencies of the cookies jobs.
type Jobs struct {
	deps Deps
}

// Register registers the cookies jobs on r. Their S3 clients are made when the
// worker starts, from the stack it runs against.
func Register(r *taskbridge.Registry) {
	c := &Jobs{}
	r.OnStart(func(ctx context.Context, s taskbridge.Stack) error {
		deps, err := NewDeps(ctx, s)
		if err != nil {
			return err
		}
		c.deps = deps
		return nil
	})
	c.register(r)
}

// RegisterWith registers the cookies jobs with deps made by the caller (tests).
func RegisterWith(r *taskbridge.Registry, deps Deps) {
	c := &Jobs{deps: deps}
	c.register(r)
}

func (c *Jobs) register(r *taskbridge.Registry) {
	r.Handle(GetMultiple, c.getMultiple)
	r.Handle(ProcessSingle, c.processSingle)
	r.Handle(PostProcessSingle, c.postProcessSingle)
	r.Handle(SideEffect, c.sideEffect, taskbridge.Observe())
	r.Handle(PostProcessAll, c.postProcessAll)
}

// NewDeps builds the S3 client, the presigner and the URL guard for a stack.
func NewDeps(ctx context.Context, s taskbridge.Stack) (Deps, error) {
	client := s3.NewFromConfig(s.AWS, func(o *s3.Options) {
		o.UsePathStyle = s.S3PathStyle
		o.DisableLogOutputChecksumValidationSkipped = true // emulators' objects have no checksum: no note on stderr
	})
	presign := s3.NewPresignClient(client)
	// What a presigned URL of the data bucket looks like on this endpoint: the URL
	// guard allows only such URLs.
	const probeKey = "taskbridge-presign-probe"
	probe, err := presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.DataBucket), Key: aws.String(probeKey)})
	if err != nil {
		return Deps{}, fmt.Errorf("presign probe: %w", err)
	}
	guard, err := NewURLGuard(probe.URL, probeKey)
	if err != nil {
		return Deps{}, err
	}
	return Deps{DataBucket: s.DataBucket, S3: client, Presigner: presign, Fetcher: guard}, nil
}

// getMultiple: {} → 0–19 random names; {"count": N} → N; {"names": [...]} → these.
// It only computes and completes: a forged token completes nothing.
func (c *Jobs) getMultiple(_ context.Context, t *taskbridge.Task) (any, error) {
	var d struct {
		Input json.RawMessage `json:"input"`
	}
	if err := t.Decode(&d); err != nil {
		return nil, err
	}
	names, err := ParseInput(d.Input)
	if err != nil {
		return nil, err
	}
	return map[string][]string{"names": names}, nil
}

func invalidf(format string, args ...any) error {
	return taskbridge.Invalid("InvalidInput", fmt.Errorf(format, args...))
}

// ParseInput reads a cookies execution input into the list of names.
func ParseInput(raw json.RawMessage) ([]string, error) {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		raw = []byte("{}")
	}
	var in map[string]json.RawMessage
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, invalidf("execution input is not a JSON object: %v", err)
	}
	if rawNames, ok := in["names"]; ok {
		var names []string
		if err := json.Unmarshal(rawNames, &names); err != nil || names == nil {
			return nil, invalidf("names must be an array of strings")
		}
		if len(names) > MaxPeople {
			return nil, invalidf("%d names is over the limit of %d", len(names), MaxPeople)
		}
		return names, nil
	}
	n := rand.IntN(20)
	if rawCount, ok := in["count"]; ok {
		var count float64
		if err := json.Unmarshal(rawCount, &count); err != nil || count != float64(int(count)) || count < 0 || count > MaxPeople {
			return nil, invalidf("count must be a whole number from 0 to %d, got %s", MaxPeople, rawCount)
		}
		n = int(count)
	}
	return randomNames(n), nil
}

type item struct {
	ExecutionArn string  `json:"executionArn"`
	Name         *string `json:"name"`
	Index        *int    `json:"index"`
}

func (i item) validate(t *taskbridge.Task) (string, int, string, error) {
	if i.Name == nil || i.Index == nil || *i.Index < 0 || *i.Index >= MaxPeople {
		return "", 0, "", invalidf("detail needs a string name and an index from 0 to %d", MaxPeople-1)
	}
	exec, err := t.ExecutionName()
	return *i.Name, *i.Index, exec, err
}

// processSingle writes a profile, presigns it, and hands the token forward in a
// processSinglePost event.
func (c *Jobs) processSingle(ctx context.Context, t *taskbridge.Task) (any, error) {
	var d item
	if err := t.Decode(&d); err != nil {
		return nil, err
	}
	name, index, exec, err := d.validate(t)
	if err != nil {
		return nil, err
	}
	if err := t.Heartbeat(ctx); err != nil { // prove the token before writing into the execution
		return nil, err
	}
	key := ItemKey(exec, "profiles", index, name)
	profile := map[string]any{
		"name": name, "index": index, "executionArn": d.ExecutionArn,
		"favouriteCookie": pick(cookieKinds, d.ExecutionArn, index),
		"createdAt":       time.Now().UTC().Format(time.RFC3339),
	}
	if err := c.putJSON(ctx, key, profile); err != nil {
		return nil, err
	}
	signed, err := c.deps.Presigner.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.deps.DataBucket), Key: aws.String(key)},
		s3.WithPresignExpires(c.presignTTL()))
	if err != nil {
		return nil, fmt.Errorf("presign %s: %w", key, err)
	}
	return nil, t.HandOff(ctx, ProcessSinglePost, map[string]any{"name": name, "index": index, "key": key, "url": signed.URL})
}

func (c *Jobs) presignTTL() time.Duration {
	if c.deps.PresignTTL > 0 {
		return c.deps.PresignTTL
	}
	return 15 * time.Minute
}

// postProcessSingle reads the profile through its presigned URL, adds the cookies
// and stores it; its output completes the Map item.
func (c *Jobs) postProcessSingle(ctx context.Context, t *taskbridge.Task) (any, error) {
	var d struct {
		item
		URL string `json:"url"`
	}
	if err := t.Decode(&d); err != nil {
		return nil, err
	}
	name, index, exec, err := d.validate(t)
	if err != nil {
		return nil, err
	}
	if err := t.Heartbeat(ctx); err != nil {
		return nil, err
	}
	body, err := c.deps.Fetcher.Fetch(ctx, d.URL)
	if err != nil {
		return nil, err
	}
	var profile map[string]any
	if err := json.Unmarshal(body, &profile); err != nil || profile == nil {
		return nil, invalidf("profile behind the URL is not a JSON object")
	}
	// Deterministic, so a redelivery stores the same number it reported.
	profile["numberOfCookiesConsumed"] = int(hash(d.ExecutionArn, index) % 21)
	profile["name"], profile["index"] = name, index
	if err := c.putJSON(ctx, ItemKey(exec, "people", index, name), profile); err != nil {
		return nil, err
	}
	return profile, nil
}

// sideEffect consumes the same event as postProcessSingle (fan-out) and only emits
// an event; the token is not its to use (it is registered with Observe).
func (c *Jobs) sideEffect(ctx context.Context, t *taskbridge.Task) (any, error) {
	var d item
	if err := t.Decode(&d); err != nil {
		return nil, err
	}
	name, index, _, err := d.validate(t)
	if err != nil {
		return nil, err
	}
	return nil, t.Publish(ctx, SideEffectDone, map[string]any{"executionArn": d.ExecutionArn, "name": name, "index": index})
}

// Report is the report object, <execution>/0-cookies.json.
type Report struct {
	Names                []string         `json:"names"`
	NumberOfPeople       int              `json:"numberOfPeople"`
	TotalCookiesConsumed int              `json:"totalCookiesConsumed"`
	People               []map[string]any `json:"people"`
}

// postProcessAll reads every stored person of the execution and writes the report.
func (c *Jobs) postProcessAll(ctx context.Context, t *taskbridge.Task) (any, error) {
	var d struct {
		Names []string `json:"names"`
	}
	if err := t.Decode(&d); err != nil {
		return nil, err
	}
	if len(d.Names) > MaxPeople {
		return nil, invalidf("%d names is over the limit of %d", len(d.Names), MaxPeople)
	}
	exec, err := t.ExecutionName()
	if err != nil {
		return nil, err
	}
	if err := t.Heartbeat(ctx); err != nil {
		return nil, err
	}
	people, err := c.readPeople(ctx, exec+"/people/", len(d.Names))
	if err != nil {
		return nil, err
	}
	if len(people) < len(d.Names) {
		// The Map completed every item, so this is a lagging store: retry.
		return nil, fmt.Errorf("only %d of %d people stored yet", len(people), len(d.Names))
	}
	rep := Report{Names: d.Names, NumberOfPeople: len(people), People: people}
	if rep.Names == nil {
		rep.Names = []string{}
	}
	for _, p := range people {
		n, _ := p["numberOfCookiesConsumed"].(float64)
		rep.TotalCookiesConsumed += int(n)
	}
	key := exec + "/0-cookies.json"
	if err := c.putJSON(ctx, key, rep); err != nil {
		return nil, err
	}
	return map[string]any{
		"numberOfPeople": rep.NumberOfPeople, "totalCookiesConsumed": rep.TotalCookiesConsumed,
		"report": "s3://" + c.deps.DataBucket + "/" + key,
	}, nil
}

// readPeople reads the people stored under prefix, by index, at most want of them
// (the execution's own Map wrote one per index) and at most maxReportBytes in all.
func (c *Jobs) readPeople(ctx context.Context, prefix string, want int) ([]map[string]any, error) {
	people := []map[string]any{} // an empty list is a list: "people": [], never null
	seen := map[int]bool{}
	total := 0
	p := s3.NewListObjectsV2Paginator(c.deps.S3, &s3.ListObjectsV2Input{Bucket: aws.String(c.deps.DataBucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() && len(people) < want {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			if len(people) >= want {
				break
			}
			total += int(aws.ToInt64(o.Size))
			if total > maxReportBytes {
				return nil, taskbridge.Permanent("ReportTooLarge", fmt.Errorf("people under %s are over %d bytes", prefix, maxReportBytes))
			}
			var person map[string]any
			if err := c.getJSON(ctx, aws.ToString(o.Key), &person); err != nil {
				return nil, err
			}
			idx, ok := person["index"].(float64)
			if !ok || idx < 0 || int(idx) >= want || seen[int(idx)] {
				continue // not one of this execution's items
			}
			seen[int(idx)] = true
			people = append(people, person)
		}
	}
	slices.SortFunc(people, func(a, b map[string]any) int {
		ai, _ := a["index"].(float64)
		bi, _ := b["index"].(float64)
		return int(ai - bi)
	})
	return people, nil
}

func (c *Jobs) putJSON(ctx context.Context, key string, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep <, > and & as they are
	if err := enc.Encode(v); err != nil {
		return taskbridge.Permanent("BadOutput", fmt.Errorf("encode %s: %w", key, err))
	}
	_, err := c.deps.S3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(c.deps.DataBucket), Key: aws.String(key), Body: bytes.NewReader(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))),
		ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

func (c *Jobs) getJSON(ctx context.Context, key string, v any) error {
	obj, err := c.deps.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.deps.DataBucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(io.LimitReader(obj.Body, maxProfileBytes+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	if len(b) > maxProfileBytes {
		return taskbridge.Permanent("CorruptProfile", fmt.Errorf("%s is over %d bytes", key, maxProfileBytes))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return taskbridge.Permanent("CorruptProfile", fmt.Errorf("decode %s: %w", key, err))
	}
	return nil
}

func hash(s string, n int) uint64 {
	h := sha256.New()
	h.Write([]byte(s))
	_ = binary.Write(h, binary.BigEndian, int64(n))
	return binary.BigEndian.Uint64(h.Sum(nil))
}

func pick(list []string, s string, n int) string { return list[hash(s, n)%uint64(len(list))] }

var (
	firstNames  = strings.Fields("Ada Alan Barbara Claude Dennis Edsger Frances Grace Hedy Ivan John Ken Linus Margaret Niklaus Radia Rob Shafi Tim Tony Whitfield Yukihiro Zoë Ángel Søren")
	lastNames   = strings.Fields("Lovelace Turing Liskov Shannon Ritchie Dijkstra Allen Hopper Lamarr Sutherland McCarthy Thompson Torvalds Hamilton Wirth Perlman Pike Goldwasser Berners-Lee Hoare Diffie Matsumoto O'Neil Núñez Kierkegaard")
	cookieKinds = strings.Fields("chocolate-chip oatmeal-raisin snickerdoodle shortbread gingerbread macadamia peanut-butter")
)

func randomNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = firstNames[rand.IntN(len(firstNames))] + " " + lastNames[rand.IntN(len(lastNames))]
	}
	return names
}
