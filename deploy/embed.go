// Package deploy embeds the deployment files that the worker and `worker bootstrap`
// read, so that they, and terraform (which reads the same files from disk), share one
// source of truth.
package deploy

import "embed"

// Files holds topology.json and the ASL definitions under asl/.
//
//go:embed topology.json asl/*.json
var Files embed.FS
