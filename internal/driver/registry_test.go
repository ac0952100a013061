package driver

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
)

// fakeConfig is a test driver's own configuration.
type fakeConfig struct{ Bad bool }

func (c fakeConfig) Validate() error {
	if c.Bad {
		return errors.New("--fake-setting: bad")
	}
	return nil
}

// TestOpen: Open makes each listed driver from its own configuration, in
// STATE_DIR/<name>, sharing one Shared; every configuration is checked
// before any driver is made, and the context reaches the factories.
func TestOpen(t *testing.T) {
	type made struct {
		c   Common
		cfg fakeConfig
	}
	var got []made
	for _, kind := range []string{api.TypeContainer, api.TypeVM} {
		name := "test-" + kind
		Register(name, func(ctx context.Context, c Common, cfg fakeConfig) (*fake, error) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			got = append(got, made{c, cfg})
			return &fake{kind: kind, have: map[string]bool{}}, nil
		})
	}
	ctx := context.Background()
	base := t.TempDir()
	d, err := Open(ctx, "test-container,test-vm", Common{StateDir: base, HostName: "h1"}, Configs{"test-vm": fakeConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || d.Name() != "container,vm" {
		t.Fatalf("made %d drivers: %s", len(got), d.Name())
	}
	for i, name := range []string{"test-container", "test-vm"} {
		c := got[i].c
		if c.StateDir != filepath.Join(base, name) || c.HostName != "h1" || c.Shared == nil || c.Shared != got[0].c.Shared || c.Shared.Dir != base {
			t.Errorf("%s was made with %+v", name, c)
		}
	}
	got = nil
	if _, err := Open(ctx, "test-container,test-vm", Common{StateDir: base}, Configs{"test-vm": fakeConfig{Bad: true}}); err == nil || !strings.Contains(err.Error(), "--fake-setting") || len(got) != 0 {
		t.Errorf("a bad configuration: %v, and %d drivers made", err, len(got))
	}
	if _, err := Open(ctx, "test-vm,nope", Common{StateDir: base}, nil); err == nil || !strings.Contains(err.Error(), `no driver "nope"`) || len(got) != 0 {
		t.Errorf("an unknown driver: %v, and %d drivers made", err, len(got))
	}
	if _, err := Open(ctx, "test-vm", Common{StateDir: base}, Configs{"test-vm": other{}}); err == nil || !strings.Contains(err.Error(), "driver.fakeConfig") {
		t.Errorf("another driver's configuration: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Open(cctx, "test-vm", Common{StateDir: base}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Open under an ended context: %v", err)
	}
}

type other struct{}

func (other) Validate() error { return nil }
