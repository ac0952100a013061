package server

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
)

// openChannel opens channel of migration mid as agent a for host over a
// real TLS connection: the upgraded connection, or nil with the refusal.
func openChannel(t *testing.T, srv *httptest.Server, a api.Agent, mid, channel, host string) (net.Conn, int, string) {
	t.Helper()
	conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /v1/agents/%s/migrations/%s/tunnel/%s?host=%s HTTP/1.1\r\nHost: kumo\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: kumo-stream\r\n\r\n",
		a.ID, mid, channel, host, a.Credential)
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		if br.Buffered() > 0 {
			t.Fatalf("bytes after the 101")
		}
		return conn, res.StatusCode, ""
	}
	b, _ := io.ReadAll(res.Body)
	conn.Close()
	return nil, res.StatusCode, string(b)
}

// closedByServer says whether the server has closed c (within a bound
// that only a broken server reaches).
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// survivor waits for the server to close all of ends but one, and
// returns that one.
func survivor(t *testing.T, ends []net.Conn) net.Conn {
	t.Helper()
	type result struct {
		i       int
		timeout bool
	}
	results := make(chan result, len(ends))
	for i, c := range ends {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		go func() {
			_, err := c.Read(make([]byte, 1))
			results <- result{i, isTimeout(err)}
		}()
	}
	closed := map[int]bool{}
	for len(closed) < len(ends)-1 {
		if r := <-results; r.timeout {
			t.Fatalf("%d of %d ends still open after 30 s", len(ends)-len(closed), len(ends))
		} else {
			closed[r.i] = true
		}
	}
	for i, c := range ends {
		if !closed[i] {
			c.SetReadDeadline(time.Now()) // ends its reader
			if r := <-results; !r.timeout {
				t.Fatalf("all %d ends closed", len(ends))
			}
			c.SetReadDeadline(time.Time{})
			return c
		}
	}
	return nil
}

// An agent of a migration opens only that migration's channels, each once
// at a time: a name not of its set is refused (400 naming the set), a
// flood of ends of one channel leaves one open, and a third end of a
// joined channel is refused (409) while the two joined ends carry bytes.
func TestMigrationTunnelIsBounded(t *testing.T) {
	ts, _, victim, _, target, in := migratingInstance(t)
	m := in.Migration
	if m.Mode != api.MigrateCold {
		t.Fatalf("mode %q: the test expects a cold migration", m.Mode)
	}
	// The contract checker of ts.net cannot upgrade: the ends go to the
	// server's own handler, the refusals (before any upgrade) through it.
	srv := httptest.NewUnstartedServer(ts.s.Handler())
	srv.StartTLS()
	defer srv.Close()

	tunnel := func(a api.Agent, ch, host string) resp {
		return ts.do("GET", "/v1/agents/"+a.ID+"/migrations/"+m.ID+"/tunnel/"+ch+"?host="+host, a.Credential, nil, "Connection", "Upgrade", "Upgrade", "kumo-stream")
	}
	// The tunnel finds migrations in the compute service's cache, which
	// follows the store a moment later.
	waitFor(t, "the migration to be known to the tunnel", func() bool { return tunnel(victim, "cold2", "hv").Status != 404 })
	for _, ch := range []string{driver.ChannelMem, driver.ChannelCtl, "nbd-x", "cold2"} {
		if r := tunnel(victim, ch, "hv"); r.Status != 400 || !strings.Contains(string(r.Body), "its channels: cold)") {
			t.Errorf("channel %q of a cold migration: %d %s", ch, r.Status, r.Body)
		}
	}
	// A flood of one end: each replaces the one waiting, which is closed,
	// so one is left open (not always the last: the server registers an
	// end just after its 101).
	var ends []net.Conn
	for range 20 {
		c, st, body := openChannel(t, srv, victim, m.ID, driver.ChannelCold, "hv")
		if c == nil {
			t.Fatalf("source end: %d %s", st, body)
		}
		defer c.Close()
		ends = append(ends, c)
	}
	src := survivor(t, ends)
	dst, st, body := openChannel(t, srv, target, m.ID, driver.ChannelCold, "ht")
	if dst == nil {
		t.Fatalf("target end: %d %s", st, body)
	}
	defer dst.Close()
	// Joined: bytes go through (which also says the splice is in place).
	src.Write([]byte("ping"))
	buf := make([]byte, 4)
	dst.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(dst, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("through the channel: %q %v", buf, err)
	}
	for range 5 {
		for _, e := range []struct {
			a    api.Agent
			host string
		}{{victim, "hv"}, {target, "ht"}} {
			if r := tunnel(e.a, driver.ChannelCold, e.host); r.Status != 409 || !strings.Contains(string(r.Body), "already joined") {
				t.Fatalf("a third end as %s: %d %s", e.host, r.Status, r.Body)
			}
		}
	}
	// The joined pair is untouched by the refusals; once it ends, the
	// channel may be opened again (a retried transfer).
	dst.Write([]byte("pong"))
	src.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(src, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("back through the channel: %q %v", buf, err)
	}
	src.Close()
	if !closedByServer(dst) {
		t.Fatal("the target end outlived its source")
	}
	var again net.Conn
	waitFor(t, "the channel free again", func() bool {
		again, _, _ = openChannel(t, srv, victim, m.ID, driver.ChannelCold, "hv")
		return again != nil
	})
	again.Close()
}

// A live migration's channels are its control, memory and root disk
// channels and one per volume it carries, named as the QEMU driver opens
// them.
func TestMigrationChannels(t *testing.T) {
	vols := []api.MigrationVolume{{ID: "0123abcd-4567-89ef-0123-456789abcdef"}}
	got := strings.Join(driver.Channels(api.MigrateLive, vols), " ")
	if got != "ctl mem nbd nbd-0123abcd456789ef0123" {
		t.Errorf("live channels: %s", got)
	}
	if got := driver.Channels(api.MigrateCold, vols); len(got) != 1 || got[0] != "cold" {
		t.Errorf("cold channels: %v", got)
	}
}
