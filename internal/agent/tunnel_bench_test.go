package agent_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/sim"
)

// tunnelBytes is what BenchmarkMigrationTunnel pushes through a channel.
const tunnelBytes = 256 << 20

// BenchmarkMigrationTunnel measures the throughput of a live migration's
// tunnel as the agents have it: agent -> server (TLS, an upgraded HTTP
// connection) -> server splices -> agent. Each iteration live-migrates
// a simulated VM between two agents; before its own (small) transfer the
// source writes 256 MiB of random bytes into a channel of the
// migration's tunnel and the target reads them all and answers. Reported:
// MiB/s from the first byte written until that answer (QEMU's migration
// has a 128 MiB/s bandwidth cap by default; a tunnel slower than that
// would be what bounds it).
//
//	go test -run '^$' -bench MigrationTunnel -benchtime 3x ./internal/agent
func BenchmarkMigrationTunnel(b *testing.B) {
	c := newCloud(b)
	took := make(chan time.Duration, 1)
	mk := func(prefix string) *pumpDriver {
		d, err := sim.New(context.Background(), driver.Common{StateDir: b.TempDir()}, sim.Config{Hosts: 1, Prefix: prefix})
		if err != nil {
			b.Fatal(err)
		}
		return &pumpDriver{Driver: d, took: took}
	}
	c.startAgentNamed("src", mk("src"), b.TempDir(), time.Hour)
	c.create("vm1")
	in := c.waitState("vm1", api.StateRunning)
	c.startAgentNamed("dst", mk("dst"), b.TempDir(), time.Hour)
	other := map[string]string{"src-0000": "dst-0000", "dst-0000": "src-0000"}
	waitFor(b, "dst-0000 to be online", func() bool {
		h, err := c.admin.Host(context.Background(), "dst-0000")
		return err == nil && h.State == api.HostOnline
	})
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		to := other[in.Host]
		op, err := c.migrate("vm1", api.InstanceMigrate{Host: to})
		if err != nil || op.Status != api.OpSucceeded {
			b.Fatalf("migrate to %s: %v %+v", to, err, op)
		}
		total += <-took
		in = c.instance("vm1")
		waitFor(b, "the migration to end", func() bool { return c.instance("vm1").Migration == nil })
	}
	b.StopTimer()
	b.ReportMetric(float64(tunnelBytes>>20)*float64(b.N)/total.Seconds(), "MiB/s")
}

// pumpDriver is the sim driver whose live migrations first push
// tunnelBytes through the tunnel's disk channel (one the server joins for
// a live migration; the sim driver does not use it).
type pumpDriver struct {
	*sim.Driver
	took chan time.Duration
}

func (p *pumpDriver) LiveSend(ctx context.Context, id string, t driver.Tunnel, opt driver.LiveOptions, progress func(api.MigrationStats)) (api.MigrationStats, error) {
	rw, err := t(ctx, driver.ChannelDisk)
	if err != nil {
		return api.MigrationStats{}, err
	}
	buf := make([]byte, 256<<10)
	rand.Read(buf)
	start := time.Now()
	for sent := 0; sent < tunnelBytes; sent += len(buf) {
		if _, err := rw.Write(buf); err != nil {
			rw.Close()
			return api.MigrationStats{}, err
		}
	}
	ack := make([]byte, 3)
	if _, err := io.ReadFull(rw, ack); err != nil {
		rw.Close()
		return api.MigrationStats{}, fmt.Errorf("bulk: %w", err)
	}
	p.took <- time.Since(start)
	rw.Close()
	return p.Driver.LiveSend(ctx, id, t, opt, progress)
}

func (p *pumpDriver) LiveReceive(ctx context.Context, s driver.Spec, t driver.Tunnel) error {
	rw, err := t(ctx, driver.ChannelDisk)
	if err != nil {
		return err
	}
	defer rw.Close()
	if n, err := io.CopyN(io.Discard, rw, tunnelBytes); err != nil {
		return fmt.Errorf("bulk: %d bytes: %w", n, err)
	}
	if _, err := rw.Write([]byte("ok\n")); err != nil {
		return err
	}
	return p.Driver.LiveReceive(ctx, s, t)
}
