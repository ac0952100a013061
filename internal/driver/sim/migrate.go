package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
)

// Migration in the simulator: what travels is the instance's record (one
// JSON line after a header line), through the tunnel as a real driver's
// bytes do, so the agents' and the server's parts are exercised for real.
// A live move takes BootDelay, in three pre-copy rounds. Between two hosts
// of one simulator the record is the same one: it just changes host.

var (
	_ driver.Migrator     = (*Driver)(nil)
	_ driver.LiveMigrator = (*Driver)(nil)
)

const (
	coldHeader = "kumo-sim-migration cold v1"
	liveHeader = "kumo-sim-migration live v1"
	// maxRecordLine bounds a record read from a tunnel.
	maxRecordLine = 1 << 20
)

func (d *Driver) record(id string) (instance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	in, ok := d.insts[id]
	if !ok {
		return instance{}, driver.ErrNotFound
	}
	return *in, nil
}

func writeRecord(w io.Writer, header string, in instance) (int64, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return 0, err
	}
	n, err := fmt.Fprintf(w, "%s\n%s\n", header, b)
	return int64(n), err
}

// readLine reads one line of at most maxRecordLine bytes.
func readLine(br *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		chunk, more, err := br.ReadLine()
		if err != nil {
			return "", err
		}
		b.Write(chunk)
		if b.Len() > maxRecordLine {
			return "", errors.New("sim migration: a line longer than 1 MiB")
		}
		if !more {
			return b.String(), nil
		}
	}
}

func readRecord(br *bufio.Reader, header string) (instance, error) {
	var in instance
	h, err := readLine(br)
	if err != nil {
		return in, err
	}
	if h != header {
		return in, fmt.Errorf("sim migration: not a %q stream", header)
	}
	line, err := readLine(br)
	if err != nil {
		return in, err
	}
	if err := json.Unmarshal([]byte(line), &in); err != nil {
		return in, fmt.Errorf("sim migration: %w", err)
	}
	return in, nil
}

// take makes the received record the instance on s.Host, in state st.
func (d *Driver) take(s driver.Spec, st driver.State) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.insts[s.ID] = &instance{Spec: s}
	d.set(s.ID, st)
}

// SendCold implements driver.Migrator.
func (d *Driver) SendCold(ctx context.Context, id string, w io.Writer) (int64, error) {
	in, err := d.record(id)
	if err != nil {
		return 0, err
	}
	switch in.State {
	case driver.Stopped, driver.Saved, driver.Prepared:
	default:
		return 0, fmt.Errorf("%w: a cold migration needs it stopped or saved, not %s", driver.ErrState, in.State)
	}
	return writeRecord(w, coldHeader, in)
}

// ReceiveCold implements driver.Migrator.
func (d *Driver) ReceiveCold(ctx context.Context, s driver.Spec, r io.Reader) error {
	in, err := readRecord(bufio.NewReader(r), coldHeader)
	if err != nil {
		return err
	}
	if in.Spec.ID != s.ID {
		return fmt.Errorf("sim migration: the stream carries instance %q, not %q", in.Spec.ID, s.ID)
	}
	switch in.State {
	case driver.Stopped, driver.Saved, driver.Prepared:
	default:
		return fmt.Errorf("sim migration: a cold stream of a %s instance", in.State)
	}
	d.take(s, in.State)
	return nil
}

// LiveSend implements driver.LiveMigrator.
func (d *Driver) LiveSend(ctx context.Context, id string, t driver.Tunnel, opt driver.LiveOptions, progress func(api.MigrationStats)) (api.MigrationStats, error) {
	start := time.Now()
	in, err := d.record(id)
	if err != nil {
		return api.MigrationStats{}, err
	}
	if in.State != driver.Running {
		return api.MigrationStats{}, fmt.Errorf("%w: a live migration needs it running, not %s", driver.ErrState, in.State)
	}
	rw, err := t(ctx, driver.ChannelMem)
	if err != nil {
		return api.MigrationStats{}, err
	}
	defer rw.Close()
	total := in.Spec.Size.MemoryMiB << 20
	st := api.MigrationStats{Status: "active", TotalBytes: total}
	for round := int64(1); round <= 3; round++ {
		if err := d.sleep(ctx, d.o.BootDelay/3); err != nil {
			return st, err
		}
		st.Rounds, st.Transferred = round, total*round/3
		st.Remaining = total - st.Transferred
		progress(st)
	}
	n, err := writeRecord(rw, liveHeader, in)
	if err != nil {
		return st, err
	}
	ack := make([]byte, 3)
	if _, err := io.ReadFull(rw, ack); err != nil || string(ack) != "ok\n" {
		return st, fmt.Errorf("the target did not take the instance (%v)", err)
	}
	// The source's copy is paused for good (a QEMU after completion),
	// unless it is the same record, now on the target.
	d.mu.Lock()
	if cur, ok := d.insts[id]; ok && cur.Spec.Host == in.Spec.Host {
		d.set(id, driver.Suspended)
	}
	d.mu.Unlock()
	st.Status, st.Transferred, st.Remaining = "completed", total+n, 0
	st.DowntimeMS, st.TotalMS = 1, time.Since(start).Milliseconds()
	return st, nil
}

// LiveReceive implements driver.LiveMigrator.
func (d *Driver) LiveReceive(ctx context.Context, s driver.Spec, t driver.Tunnel) error {
	rw, err := t(ctx, driver.ChannelMem)
	if err != nil {
		return err
	}
	defer rw.Close()
	in, err := readRecord(bufio.NewReader(rw), liveHeader)
	if err != nil {
		return err
	}
	if in.Spec.ID != s.ID || in.State != driver.Running {
		return fmt.Errorf("sim migration: the stream carries %s instance %q, not running %q", in.State, in.Spec.ID, s.ID)
	}
	d.take(s, driver.Running)
	_, err = rw.Write([]byte("ok\n"))
	return err
}

// LiveAbort implements driver.LiveMigrator.
func (d *Driver) LiveAbort(ctx context.Context, id string) error {
	return d.change(id, []driver.State{driver.Suspended}, driver.Running)
}
