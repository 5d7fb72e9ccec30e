package awstest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal kills the emulator if the test binary dies without running Main's
// cleanup (a test timeout, say), so no server outlives its tests.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
