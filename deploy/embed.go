// Package deploy embeds the deployment files that the worker and `worker bootstrap`
// read, so that they, and terraform (which reads the same files from disk), share one
// source of truth.
package deploy

import (
	"embed"
	"encoding/json"
	"sync"
)

// Files holds topology.json, the ASL definitions under asl/, the Grafana dashboards
// (`worker validate` checks that they show every queue) and data-bucket.json.
//
//go:embed topology.json asl/*.json observability/grafana/dashboards/*.json data-bucket.json
var Files embed.FS

// ReservedFolders are the worker's own top-level folders of the data bucket
// (data-bucket.json: terraform's lifecycle rules read the same list). An execution
// of one of these names would write among them, so the worker refuses it.
var ReservedFolders = sync.OnceValue(func() []string {
	b, err := Files.ReadFile("data-bucket.json")
	if err != nil {
		panic("deploy: data-bucket.json is not embedded: " + err.Error())
	}
	var doc struct {
		ReservedFolders []struct {
			Name string `json:"name"`
		} `json:"reservedFolders"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		panic("deploy: data-bucket.json: " + err.Error()) // a build-time file; its test reads it
	}
	names := make([]string, len(doc.ReservedFolders))
	for i, f := range doc.ReservedFolders {
		names[i] = f.Name
	}
	return names
})
