package scheduler

import (
	"strings"
	"testing"
)

// An instance that needs a volume of a local pool goes to the volume's
// host, whatever the policy prefers, and explain names the volume for
// every other host.
func TestVolumeFilter(t *testing.T) {
	hosts := []Host{host("a"), host("b"), host("c", func(h *Host) { h.Used.VCPUs = 3 })}
	boot := func(r *Request) { r.Volumes = []VolumeNeed{{Name: "root", Host: "c"}} }
	for _, policy := range Policies {
		p := Schedule(Snapshot{Hosts: hosts}, []Request{req("r", boot)}, policy)
		if m := placed(p); m["r"] != "c" {
			t.Fatalf("%s: placed %v, want on c (its volume's host)", policy, m)
		}
	}
	// A volume with no host yet (made where the instance goes) pins nothing.
	free := func(r *Request) { r.Volumes = []VolumeNeed{{Name: "root"}} }
	for _, h := range Explain(Snapshot{Hosts: hosts}, req("r", free), Packing) {
		if !h.Feasible {
			t.Fatalf("unhomed volume: %s refused: %q", h.Host, h.Reason)
		}
	}
	res := Explain(Snapshot{Hosts: hosts}, req("r", boot), Packing)
	for _, h := range res {
		switch h.Host {
		case "c":
			if !h.Feasible {
				t.Fatalf("c refused: %q", h.Reason)
			}
		default:
			if h.Feasible || h.Reason != "volume root lives on host c (local pool)" {
				t.Fatalf("%s: feasible=%v reason %q", h.Host, h.Feasible, h.Reason)
			}
		}
	}
	// The volume's host full: no host fits, and the summary says why.
	r := req("r", boot, func(r *Request) { r.Size.VCPUs = 2 })
	p := Schedule(Snapshot{Hosts: hosts}, []Request{r}, Striping)
	if len(p.Placements) != 0 || len(p.Failures) != 1 {
		t.Fatalf("plan %+v", p)
	}
	want := "0/3 hosts: 2 volume root lives on host c (local pool), 1 insufficient vcpus (need 2)"
	if !strings.Contains(p.Failures[0].Reason, want) {
		t.Fatalf("failure %q, want %q", p.Failures[0].Reason, want)
	}
}
