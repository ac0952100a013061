package agent

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
)

// volumesSeen is a port wiring whose spec lists the volumes made so far,
// and counts how often PROLOG looked.
type volumesSeen struct {
	portWiring
	mu    sync.Mutex
	have  []string
	looks int
}

func (v *volumesSeen) spec(s driver.Spec, _ api.Assignment) driver.Spec {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.looks++
	for _, id := range v.have {
		s.Volumes = append(s.Volumes, driver.Volume{ID: id})
	}
	return s
}

func (v *volumesSeen) state() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.looks
}

// PROLOG of a restored instance waits for every volume made with it (its
// boot volume and the others), not only its boot volume.
func TestPrologWaitsForNewVolumes(t *testing.T) {
	seen := &volumesSeen{have: []string{"root"}}
	in := newInstances(nil, nil, seen, 1, time.Minute, instanceNews{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan error, 1)
	go func() {
		done <- in.waitBootVolume(context.Background(), api.Assignment{ID: "i", BootVolume: "root", NewVolumes: []string{"data"}})
	}()
	// It looked at least twice with the data volume missing and did not
	// return.
	for seen.state() < 2 {
		select {
		case err := <-done:
			t.Fatalf("PROLOG went on without the data volume: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case err := <-done:
		t.Fatalf("PROLOG went on without the data volume: %v", err)
	default:
	}
	seen.mu.Lock()
	seen.have = append(seen.have, "data")
	seen.mu.Unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("PROLOG did not go on once every volume was made")
	}
}
