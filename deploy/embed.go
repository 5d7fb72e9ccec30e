// Package deploy embeds the deployment files that the worker and `worker bootstrap`
// read, so that they, and terraform (which reads the same files from disk), share one
// source of truth.
package deploy

import "embed"

// Files holds topology.json, the ASL definitions under asl/, and the Grafana
// dashboards (`worker validate` checks that they show every queue).
//
//go:embed topology.json asl/*.json observability/grafana/dashboards/*.json
var Files embed.FS
