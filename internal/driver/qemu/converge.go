package qemu

import (
	"fmt"

	"github.com/kumocloud/kumo/internal/driver"
)

// notConverged is why a live migration was abandoned at its bound, with
// QEMU's figures: the guest dirtied its memory faster than it was sent,
// even throttled.
func notConverged(opt driver.LiveOptions, mi migrationInfo) error {
	return fmt.Errorf("the memory did not converge within %s (downtime limit %d ms, auto-converge %v, bandwidth %s): after %d rounds %d KiB were still dirty (%d KiB sent), the guest dirtying %d pages/s with its CPU throttled %d%%",
		opt.ConvergeWithin, opt.DowntimeLimitMS, opt.AutoConverge, bandwidth(opt.MaxBandwidth), mi.RAM.DirtySyncs, mi.RAM.Remaining>>10, mi.RAM.Transferred>>10, mi.RAM.DirtyRate, mi.CPUThrottle)
}

func bandwidth(b int64) string {
	if b <= 0 {
		return "unlimited"
	}
	return fmt.Sprintf("%d KiB/s", b>>10)
}
