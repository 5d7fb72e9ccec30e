package jobs

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
)

// Job names, as the topology binds them to queues.
const (
	GetMultiple       = "getMultiple"
	ProcessSingle     = "processSingle"
	PostProcessSingle = "postProcessSingle"
	SideEffect        = "sideEffect"
	PostProcessAll    = "postProcessAll"
	Finisher          = "finisher"
)

// Detail types the jobs emit.
const (
	ProcessSinglePost = "processSinglePost"
	SideEffectDone    = "sideEffectDone"
)

// MaxPeople bounds {"count": N} and {"names": [...]}.
const MaxPeople = 10000

type s3API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

type presigner interface {
	PresignGetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
}

// Publisher puts an event on the bus; internal/event implements it.
type Publisher interface {
	Publish(ctx context.Context, detailType string, detail any) error
}

// Fetcher fetches a presigned URL; URLGuard implements it.
type Fetcher interface {
	Fetch(ctx context.Context, url string) ([]byte, error)
}

// CookiesConfig configures the jobs of the cookies workflow.
type CookiesConfig struct {
	DataBucket string
	PresignTTL time.Duration // default 15 min
}

// Cookies holds the dependencies of the cookies jobs.
type Cookies struct {
	cfg     CookiesConfig
	s3      s3API
	presign presigner
	publish Publisher
	fetch   Fetcher
}

// NewCookies returns the cookies jobs' dependencies.
func NewCookies(cfg CookiesConfig, s3Client s3API, p presigner, pub Publisher, f Fetcher) *Cookies {
	if cfg.PresignTTL == 0 {
		cfg.PresignTTL = 15 * time.Minute
	}
	return &Cookies{cfg: cfg, s3: s3Client, presign: p, publish: pub, fetch: f}
}

// Jobs lists the cookies jobs and the finisher.
func (c *Cookies) Jobs() []Job {
	return []Job{
		{Name: GetMultiple, NeedsToken: true, Completes: true, Run: c.getMultiple},
		{Name: ProcessSingle, NeedsToken: true, Run: c.processSingle},
		{Name: PostProcessSingle, NeedsToken: true, Completes: true, Run: c.postProcessSingle},
		{Name: SideEffect, Run: c.sideEffect},
		{Name: PostProcessAll, NeedsToken: true, Completes: true, Run: c.postProcessAll},
		{Name: Finisher, NeedsToken: true, Completes: true, Run: finish},
	}
}

// getMultiple: {} → 0–19 random names; {"count": N} → N; {"names": [...]} → these.
func (c *Cookies) getMultiple(_ context.Context, t Task) (any, error) {
	var d struct {
		Input json.RawMessage `json:"input"`
	}
	if err := decodeDetail(t, &d); err != nil {
		return nil, err
	}
	names, err := ParseInput(d.Input)
	if err != nil {
		return nil, err
	}
	return map[string][]string{"names": names}, nil
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
	common
	Name  *string `json:"name"`
	Index *int    `json:"index"`
}

func (i item) validate() (string, int, string, error) {
	if i.Name == nil || i.Index == nil || *i.Index < 0 {
		return "", 0, "", invalidf("detail needs a string name and an index >= 0")
	}
	exec, err := ExecutionName(i.ExecutionArn)
	return *i.Name, *i.Index, exec, err
}

// processSingle writes a profile, presigns it, and hands the token forward in a
// processSinglePost event.
func (c *Cookies) processSingle(ctx context.Context, t Task) (any, error) {
	var d item
	if err := decodeDetail(t, &d); err != nil {
		return nil, err
	}
	name, index, exec, err := d.validate()
	if err != nil {
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
	signed, err := c.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.cfg.DataBucket), Key: aws.String(key)},
		s3.WithPresignExpires(c.cfg.PresignTTL))
	if err != nil {
		return nil, fmt.Errorf("presign %s: %w", key, err)
	}
	return nil, c.publish.Publish(ctx, ProcessSinglePost, map[string]any{
		"TaskToken": d.TaskToken, "executionArn": d.ExecutionArn, "name": name, "index": index, "key": key, "url": signed.URL,
	})
}

// postProcessSingle reads the profile through its presigned URL, adds the cookies
// and stores it; its output completes the Map item.
func (c *Cookies) postProcessSingle(ctx context.Context, t Task) (any, error) {
	var d struct {
		item
		URL string `json:"url"`
	}
	if err := decodeDetail(t, &d); err != nil {
		return nil, err
	}
	name, index, exec, err := d.validate()
	if err != nil {
		return nil, err
	}
	body, err := c.fetch.Fetch(ctx, d.URL)
	if err != nil {
		return nil, err
	}
	var profile map[string]any
	if err := json.Unmarshal(body, &profile); err != nil {
		return nil, invalidf("profile behind the URL is not a JSON object: %v", err)
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
// an event; the token is not its to use.
func (c *Cookies) sideEffect(ctx context.Context, t Task) (any, error) {
	var d item
	if err := decodeDetail(t, &d); err != nil {
		return nil, err
	}
	name, index, _, err := d.validate()
	if err != nil {
		return nil, err
	}
	return nil, c.publish.Publish(ctx, SideEffectDone, map[string]any{"executionArn": d.ExecutionArn, "name": name, "index": index})
}

// Report is the report object, <execution>/0-cookies.json.
type Report struct {
	Names                []string         `json:"names"`
	NumberOfPeople       int              `json:"numberOfPeople"`
	TotalCookiesConsumed int              `json:"totalCookiesConsumed"`
	People               []map[string]any `json:"people"`
}

// postProcessAll reads every stored person of the execution and writes the report.
func (c *Cookies) postProcessAll(ctx context.Context, t Task) (any, error) {
	var d struct {
		common
		Names []string `json:"names"`
	}
	if err := decodeDetail(t, &d); err != nil {
		return nil, err
	}
	exec, err := ExecutionName(d.ExecutionArn)
	if err != nil {
		return nil, err
	}
	people, err := c.readPeople(ctx, exec+"/people/")
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
		"report": "s3://" + c.cfg.DataBucket + "/" + key,
	}, nil
}

func (c *Cookies) readPeople(ctx context.Context, prefix string) ([]map[string]any, error) {
	var people []map[string]any
	p := s3.NewListObjectsV2Paginator(c.s3, &s3.ListObjectsV2Input{Bucket: aws.String(c.cfg.DataBucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			var person map[string]any
			if err := c.getJSON(ctx, aws.ToString(o.Key), &person); err != nil {
				return nil, err
			}
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

// finish completes the token of a taskFinished event with the event's detail, less
// the token itself (a credential, not output).
func finish(_ context.Context, t Task) (any, error) {
	var detail map[string]json.RawMessage
	if err := decodeDetail(t, &detail); err != nil {
		return nil, err
	}
	delete(detail, "TaskToken")
	return detail, nil
}

func (c *Cookies) putJSON(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return Permanent("BadOutput", fmt.Errorf("marshal %s: %w", key, err))
	}
	_, err = c.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(c.cfg.DataBucket), Key: aws.String(key), Body: bytes.NewReader(b), ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

func (c *Cookies) getJSON(ctx context.Context, key string, v any) error {
	obj, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.cfg.DataBucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(io.LimitReader(obj.Body, maxProfileBytes))
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return Permanent("CorruptProfile", fmt.Errorf("decode %s: %w", key, err))
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
