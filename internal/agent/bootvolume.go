package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kumocloud/kumo/api"
)

// bootVolumeWait bounds how long PROLOG waits for a VM's boot volume to be
// made on the host (a root volume made from an image is fetched first).
var bootVolumeWait = 30 * time.Minute

// errSuperseded: a newer assignment of the instance came meanwhile (a
// terminate while it waits): its worker takes that one instead.
var errSuperseded = errors.New("a newer assignment came")

// waitBootVolume waits, in PROLOG, until the volume a VM boots from is made
// on this host and attached to it (the volume job does both): the driver
// then finds it in the spec. A VM without one has nothing to wait for.
//
// The volumes made with a restored instance (NewVolumes) are waited for
// the same way, so it starts with all of them.
func (in *instances) waitBootVolume(ctx context.Context, as api.Assignment) error {
	want := as.NewVolumes
	if as.BootVolume != "" {
		want = append([]string{as.BootVolume}, want...)
	}
	if len(want) == 0 {
		return nil
	}
	deadline := time.Now().Add(bootVolumeWait)
	for {
		have := map[string]bool{}
		for _, v := range in.spec(as).Volumes {
			have[v.ID] = true
		}
		missing := ""
		for _, id := range want {
			if !have[id] {
				missing = id
				break
			}
		}
		if missing == "" {
			return nil
		}
		in.mu.Lock()
		w := in.work[as.ID]
		newer := w != nil && w.next != nil
		in.mu.Unlock()
		if newer {
			return errSuperseded
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("volume %s was not made on this host within %s (kumo volume show says why)", missing, bootVolumeWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
