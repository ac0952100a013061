package hosts

import (
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/store/memstore"
)

// TestStoppingServerJudgesNoHostLost: a host silent past the grace is not
// alive; once the server is stopping (it hears no heartbeats any more)
// every host counts as alive, so no verdict of loss is taken on the way
// out.
func TestStoppingServerJudgesNoHostLost(t *testing.T) {
	svc := New(memstore.New(), "fp", 20*time.Millisecond)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if alive, _ := svc.Alive("h1"); !alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a silent host stayed alive past its grace")
		}
		time.Sleep(5 * time.Millisecond)
	}
	svc.Stopping()
	if alive, _ := svc.Alive("h1"); !alive {
		t.Fatal("a stopping server judged a host lost")
	}
}
