package execjob

import (
	"bytes"
	"os"
	"strconv"
)

// groupAlive reports whether a process of group pgid is still running. Zombies do
// not count: a killed grandchild is reparented to init, which reaps it in its own
// time (kill(-pgid, 0) keeps succeeding until then).
func groupAlive(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return groupSignalable(pgid)
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := bytes.Fields(stat[i+1:])
		if len(fields) < 3 {
			continue
		}
		if pg, err := strconv.Atoi(string(fields[2])); err != nil || pg != pgid {
			continue
		}
		if state := fields[0]; !bytes.Equal(state, []byte("Z")) && !bytes.Equal(state, []byte("X")) {
			return true
		}
	}
	return false
}
