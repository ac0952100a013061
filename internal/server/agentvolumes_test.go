package server

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
)

// An agent acts only on the volumes and backups its own hosts hold.
// Another agent (named like the victim) does not see the victim's volume
// in its view, cannot report it made or gone, cannot send chunks or a
// manifest (or a failure) for its backup, nor read the manifest or chunks
// of a backup restored on the victim's host - each a 404 naming nothing.
func TestAgentTouchesOnlyItsOwnVolumes(t *testing.T) {
	ts, admin, _, victim, intruder := victimAndIntruder(t)
	at := func(a api.Agent, rest string) string { return "/v1/agents/" + a.ID + rest }
	vol := func(name string) api.Volume {
		var v api.Volume
		ts.do("GET", "/v1/projects/p/volumes/"+name, admin, nil).decode(t, &v)
		return v
	}
	var v, gone api.Volume
	for name, out := range map[string]*api.Volume{"v": &v, "gone": &gone} {
		if r := ts.do("POST", "/v1/projects/p/volumes", admin, api.VolumesPost{Name: name, SizeGiB: 1, Format: "ext4", Host: "hv"}); r.Status != 201 {
			t.Fatalf("volume %s: %d %s", name, r.Status, r.Body)
		}
		*out = vol(name)
	}

	// The intruder's view has nothing of hv; its word on hv's volumes is
	// not taken.
	if r := ts.do("GET", at(intruder, "/volumes"), intruder.Credential, nil); r.Status != 200 || strings.Contains(string(r.Body), v.ID) {
		t.Fatalf("the intruder's view: %d %s", r.Status, r.Body)
	}
	ts.do("POST", at(intruder, "/volumes"), intruder.Credential, api.AgentVolumeReport{Volumes: []api.VolumeReport{{ID: v.ID, Status: "ready", SizeGiB: 1}}})
	if got := vol("v"); got.Status != api.VolumeCreating {
		t.Fatalf("the intruder made hv's volume: %s", got.Status)
	}
	report := func(a api.Agent, reps ...api.VolumeReport) {
		t.Helper()
		if r := ts.do("POST", at(a, "/volumes"), a.Credential, api.AgentVolumeReport{Volumes: reps}); r.Status != 204 {
			t.Fatalf("report: %d %s", r.Status, r.Body)
		}
	}
	report(victim, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1}, api.VolumeReport{ID: gone.ID, Status: "ready", SizeGiB: 1})
	ts.do("DELETE", "/v1/projects/p/volumes/gone", admin, nil)
	report(intruder, api.VolumeReport{ID: gone.ID, Status: "gone"})
	if r := ts.do("GET", "/v1/projects/p/volumes/gone", admin, nil); r.Status != 200 {
		t.Fatalf("the intruder's 'gone' removed hv's volume: %d", r.Status)
	}

	// A backup of v is hv's to send.
	var b api.VolumeBackup
	if r := ts.do("POST", "/v1/projects/p/volumes/v/backups", admin, api.VolumeBackupsPost{Name: "b"}); r.Status != 201 {
		t.Fatalf("backup: %d %s", r.Status, r.Body)
	}
	ts.do("GET", "/v1/projects/p/volume-backups/b", admin, nil).decode(t, &b)
	data := []byte("forged bytes")
	h := sha256.Sum256(data)
	sum := hex.EncodeToString(h[:])
	n := 1 << 30 / api.BackupChunk
	chunks := make([]string, n)
	chunks[0] = sum
	for what, r := range map[string]resp{
		"chunk":    ts.do("PUT", at(intruder, "/backups/"+b.ID+"/chunks/"+sum), intruder.Credential, string(data), "Content-Type", "application/octet-stream"),
		"manifest": ts.do("POST", at(intruder, "/backups/"+b.ID), intruder.Credential, api.BackupManifest{Chunks: chunks, Count: int64(n)}),
		"failure":  ts.do("POST", at(intruder, "/backups/"+b.ID), intruder.Credential, api.BackupManifest{Error: "forged"}),
	} {
		if r.Status != 404 || strings.Contains(string(r.Body), "hv") {
			t.Errorf("the intruder's %s for hv's backup: %d %s", what, r.Status, r.Body)
		}
	}
	if got := ts.do("GET", "/v1/projects/p/volume-backups/b", admin, nil); !strings.Contains(string(got.Body), `"status":"creating"`) {
		t.Fatalf("the backup after the intruder: %s", got.Body)
	}
	// The victim sends it.
	if r := ts.do("POST", at(victim, "/backups/"+b.ID), victim.Credential, api.BackupManifest{Chunks: chunks, Count: int64(n)}); r.Status != 200 || !strings.Contains(string(r.Body), sum) {
		t.Fatalf("the victim's manifest: %d %s", r.Status, r.Body)
	}
	if r := ts.do("PUT", at(victim, "/backups/"+b.ID+"/chunks/"+sum), victim.Credential, string(data), "Content-Type", "application/octet-stream"); r.Status != 204 {
		t.Fatalf("the victim's chunk: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", at(victim, "/backups/"+b.ID), victim.Credential, api.BackupManifest{Chunks: chunks, Count: int64(n)}); r.Status != 200 {
		t.Fatalf("the victim's manifest again: %d %s", r.Status, r.Body)
	}

	// Restored on hv: only hv's agent reads it.
	if r := ts.do("POST", "/v1/projects/p/volumes", admin, api.VolumesPost{Name: "r", SizeGiB: 1, Host: "hv", Backup: "b"}); r.Status != 201 {
		t.Fatalf("restore: %d %s", r.Status, r.Body)
	}
	for _, a := range []api.Agent{intruder, victim} {
		want := map[string]int{intruder.ID: 404, victim.ID: 200}[a.ID]
		if r := ts.do("GET", at(a, "/backups/"+b.ID), a.Credential, nil); r.Status != want {
			t.Errorf("agent %s reads the manifest: %d, want %d", a.ID, r.Status, want)
		}
		if r := ts.do("GET", at(a, "/backups/"+b.ID+"/chunks/"+sum), a.Credential, nil); r.Status != want || want == 200 && string(r.Body) != string(data) {
			t.Errorf("agent %s reads the chunk: %d, want %d", a.ID, r.Status, want)
		}
	}
}

// What an agent says went wrong with a volume or a backup is shown to the
// tenant (kumo volume show prints it in a terminal): it arrives without
// control characters (a terminal obeys escape sequences) and bounded, not
// as the megabyte a request body may hold.
func TestAgentErrorsReachTenantsPrintable(t *testing.T) {
	ts, admin, _, victim, _ := victimAndIntruder(t)
	at := func(rest string) string { return "/v1/agents/" + victim.ID + rest }
	if r := ts.do("POST", "/v1/projects/p/volumes", admin, api.VolumesPost{Name: "v", SizeGiB: 1, Format: "ext4", Host: "hv"}); r.Status != 201 {
		t.Fatalf("volume: %d %s", r.Status, r.Body)
	}
	var v api.Volume
	ts.do("GET", "/v1/projects/p/volumes/v", admin, nil).decode(t, &v)
	bad := "mkfs failed\x1b]0;owned\x07\x1b[2J" + strings.Repeat("x", 200<<10)
	if r := ts.do("POST", at("/volumes"), victim.Credential, api.AgentVolumeReport{Volumes: []api.VolumeReport{{ID: v.ID, Status: "error", Error: bad}}}); r.Status != 204 {
		t.Fatalf("report: %d %s", r.Status, r.Body)
	}
	ts.do("GET", "/v1/projects/p/volumes/v", admin, nil).decode(t, &v)
	if v.Error == "" || strings.ContainsAny(v.Error, "\x1b\x07") || len(v.Error) > 1024 {
		t.Errorf("the volume's error as the tenant sees it: %d bytes %q...", len(v.Error), v.Error[:min(len(v.Error), 40)])
	}
	report := func(reps ...api.VolumeReport) {
		t.Helper()
		if r := ts.do("POST", at("/volumes"), victim.Credential, api.AgentVolumeReport{Volumes: reps}); r.Status != 204 {
			t.Fatalf("report: %d %s", r.Status, r.Body)
		}
	}
	report(api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	var b api.VolumeBackup
	if r := ts.do("POST", "/v1/projects/p/volumes/v/backups", admin, api.VolumeBackupsPost{Name: "b"}); r.Status != 201 {
		t.Fatalf("backup: %d %s", r.Status, r.Body)
	}
	ts.do("GET", "/v1/projects/p/volume-backups/b", admin, nil).decode(t, &b)
	if r := ts.do("POST", at("/backups/"+b.ID), victim.Credential, api.BackupManifest{Error: bad}); r.Status != 200 {
		t.Fatalf("the backup's failure: %d %s", r.Status, r.Body)
	}
	ts.do("GET", "/v1/projects/p/volume-backups/b", admin, nil).decode(t, &b)
	if b.Status != api.VolumeError || strings.ContainsAny(b.Error, "\x1b\x07") || len(b.Error) > 1024 {
		t.Errorf("the backup's error as the tenant sees it: %s, %d bytes", b.Status, len(b.Error))
	}
}
