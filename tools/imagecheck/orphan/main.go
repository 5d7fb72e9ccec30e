// Command orphan is the exec job of make image-check (scripts/image-check.sh): it
// starts a child and exits without waiting for it, as a shell script that leaves a
// background process does. The worker then stops what is left of the command's
// process group; the killed child's parent is the container's PID 1, which reaps
// it only if it is an init (podman --init, compose init: true, ECS
// initProcessEnabled). Without one the child stays a zombie.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		time.Sleep(time.Minute)
		return
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // the event's detail
	child := exec.Command(os.Args[0], "child")
	if err := child.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "orphan: start the child:", err)
		os.Exit(1)
	}
	// No Wait: the child outlives this process.
	_ = json.NewEncoder(os.Stdout).Encode(map[string]int{"orphanPid": child.Process.Pid})
}
