package driver

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/kumocloud/kumo/api"
)

// Tunnel opens a channel of a migration's tunnel: a byte stream to the
// same channel opened on the other host (the agent joins them through
// the server; the two ends are the migration's two agents, nobody else).
type Tunnel func(ctx context.Context, channel string) (io.ReadWriteCloser, error)

// The channels of a migration's tunnel: a cold migration has one, a live
// one its control, memory and root disk channels and one per volume it
// copies. The server joins no other names, and each at most once at a
// time, so an agent cannot hold more than these open.
const (
	ChannelCold = "cold"
	ChannelCtl  = "ctl"
	ChannelMem  = "mem"
	ChannelDisk = "nbd"
)

// VolumeChannel is the live migration channel of a volume's disk.
func VolumeChannel(volumeID string) string {
	short := strings.ReplaceAll(volumeID, "-", "")
	return "nbd-" + short[:min(20, len(short))]
}

// Channels are the names a migration in mode carrying vols may open.
func Channels(mode string, vols []api.MigrationVolume) []string {
	if mode != api.MigrateLive {
		return []string{ChannelCold}
	}
	out := []string{ChannelCtl, ChannelMem, ChannelDisk}
	for _, v := range vols {
		out = append(out, VolumeChannel(v.ID))
	}
	return out
}

// Migrator is the optional feature of CapMigrate: cold migration. The
// agent has stopped (or saved) the instance on the source first.
type Migrator interface {
	// SendCold writes everything the target needs of a stopped or saved
	// instance (its disk's changes over the base image, its saved state)
	// to w; the instance is left as it is (the source removes it once
	// the target has it).
	SendCold(ctx context.Context, id string, w io.Writer) (int64, error)
	// ReceiveCold makes the instance on s.Host from what SendCold wrote,
	// fetching the base image by hash as Prepare does, and leaves it as it
	// was on the source (stopped, or saved: Start restores it). Anything
	// it read that is not its own format is refused. On error nothing of
	// the instance is left.
	ReceiveCold(ctx context.Context, s Spec, r io.Reader) error
}

// LiveMigrator is the optional feature of CapLiveMigrate: a running
// instance moves with its memory and disks while it runs.
type LiveMigrator interface {
	// LiveReceive prepares s on this host (s.Host), starts it waiting for
	// the incoming migration on tunnel channels, and returns once the
	// migration has completed and the instance runs here. On error
	// nothing of it is left here.
	LiveReceive(ctx context.Context, s Spec, t Tunnel) error
	// LiveSend migrates a running instance through the tunnel, calling
	// progress with the figures as they come, and returns the final ones
	// once the target has it (the source's copy is then paused, never
	// running again). An error or ctx ending abandons the migration: the
	// instance keeps running here.
	LiveSend(ctx context.Context, id string, t Tunnel, opt LiveOptions, progress func(api.MigrationStats)) (api.MigrationStats, error)
	// LiveAbort makes sure the instance runs here after a migration that
	// failed (a source paused at completion whose target then failed is
	// started again). Not found is an error.
	LiveAbort(ctx context.Context, id string) error
}

// LiveCanceler is a LiveMigrator whose hypervisor may go on migrating
// after its caller is gone (an agent killed mid-try): LiveCancel ends
// whatever outgoing migration of the instance is under way there, and
// never resumes a guest paused for the switch-over (its target may run
// it now: only the server, rolling back, says it runs here again).
type LiveCanceler interface {
	LiveCancel(ctx context.Context, id string) error
}

// LiveOptions tune a live migration.
type LiveOptions struct {
	// DowntimeLimitMS is the longest pause allowed at stop-and-copy
	// (default 300 ms).
	DowntimeLimitMS int64
	// AutoConverge throttles a guest whose memory dirties faster than it
	// is sent.
	AutoConverge bool
	// ConvergeWithin bounds the memory phase: still not converged after
	// it, the migration is abandoned with its figures as the reason and
	// the instance keeps running here (0: only ctx bounds it).
	ConvergeWithin time.Duration
	// MaxBandwidth caps the memory stream, in bytes a second (0: the
	// hypervisor's default).
	MaxBandwidth int64
	// CopyVolumes are the ids of the instance's volumes (its boot volume
	// included) in local pools: the source mirrors them to the target
	// with its own disk. Volumes not named are on storage both hosts
	// open (a shared pool) and are not copied.
	CopyVolumes []string
}

// ErrSourceGaveUp is a receiving side's error when the sending side said
// it abandons the migration: the sender reports why, the receiver only
// cleans up (its report would hide the reason).
var ErrSourceGaveUp = errors.New("the source gave up (its own reason is in its report)")

// PrepareAfresh prepares s on d for a migration to arrive into - what an
// earlier try left of it removed first - and returns how to remove it all
// again if the arrival fails.
func PrepareAfresh(ctx context.Context, d Driver, s Spec) (undo func(), err error) {
	if d.Has(s.ID) {
		if err := d.Cleanup(ctx, s.ID, false); err != nil {
			return nil, err
		}
	}
	if err := d.Prepare(ctx, s); err != nil {
		return nil, err
	}
	return func() { d.Cleanup(context.WithoutCancel(ctx), s.ID, false) }, nil
}

// CountWriter counts what passes through it to W.
type CountWriter struct {
	W io.Writer
	N int64
}

func (c *CountWriter) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N += int64(n)
	return n, err
}
