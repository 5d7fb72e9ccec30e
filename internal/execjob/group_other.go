//go:build !linux

package execjob

// groupAlive reports whether group pgid still has a process (zombies included).
func groupAlive(pgid int) bool { return groupSignalable(pgid) }
