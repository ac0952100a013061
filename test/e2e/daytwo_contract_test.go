package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
)

// TestDayTwoContract drives the user-facing endpoints of this round's
// day-two work - storage pools, volumes with their snapshots and backups,
// consolidation, browser sessions - on a real server with a sim host,
// validating every exchange against api/openapi.yaml. Answers may be
// refusals (a sim host makes no volume, so a snapshot of it is a
// conflict): what is checked is that each is one the contract promises.
func TestDayTwoContract(t *testing.T) {
	s, v, admin, ctx, check := contractSetup(t, 2*time.Minute, "--drivers", "sim")
	// Storage pools (cloud admin).
	_, err := admin.CreateStoragePool(ctx, api.StoragePoolsPost{Name: "shared", Type: "shared-dir", Path: t.TempDir()})
	check("create pool", err)
	_, err = admin.StoragePools(ctx)
	check("list pools", err)
	_, err = admin.StoragePool(ctx, "shared")
	check("show pool", err)
	check("delete pool", admin.DeleteStoragePool(ctx, "shared"))

	// Volumes, as far as a sim host takes them.
	_, err = admin.CreateVolume(ctx, "default", api.VolumesPost{Name: "data", SizeGiB: 1})
	check("create volume", err)
	_, err = admin.Volumes(ctx, "default")
	check("list volumes", err)
	_, err = admin.Volume(ctx, "default", "data")
	check("show volume", err)
	admin.ResizeVolume(ctx, "default", "data", 2)
	admin.AttachVolume(ctx, "default", "data", api.VolumeAttach{Instance: "nope"})
	admin.DetachVolume(ctx, "default", "data")
	admin.CreateVolumeSnapshot(ctx, "default", "data", "s1")
	_, err = admin.VolumeSnapshots(ctx, "default", "data")
	check("list snapshots", err)
	admin.VolumeSnapshot(ctx, "default", "data", "s1")
	admin.RevertVolume(ctx, "default", "data", "s1")
	admin.DeleteVolumeSnapshot(ctx, "default", "data", "s1")
	admin.CreateVolumeBackup(ctx, "default", "data", api.VolumeBackupsPost{})
	_, err = admin.VolumeBackups(ctx, "default")
	check("list backups", err)
	admin.VolumeBackup(ctx, "default", "nope")
	admin.DeleteVolumeBackup(ctx, "default", "nope")
	// A move to a host that does not exist: refused, as the contract says.
	admin.MoveVolume(ctx, "default", "data", api.VolumeMove{Host: "nope"})
	admin.DeleteVolume(ctx, "default", "data")

	// Instance backups: of a sim container without volumes (its
	// definition only: the sim driver copies no root filesystem),
	// restored under another name.
	_, err = admin.CreateInstance(ctx, "default", api.InstancesPost{Name: "ib-src", Type: "container", Flavor: "tiny", Image: "x"})
	check("create instance", err)
	_, err = admin.CreateInstanceBackup(ctx, "default", "ib-src", api.InstanceBackupsPost{Name: "ib1", SkipRootDisk: true})
	check("instance backup", err)
	_, err = admin.InstanceBackups(ctx, "default")
	check("list instance backups", err)
	_, err = admin.InstanceBackup(ctx, "default", "ib1")
	check("show instance backup", err)
	_, err = admin.RestoreInstance(ctx, "default", "ib1", "ib-copy")
	check("restore instance", err)
	check("delete instance backup", admin.DeleteInstanceBackup(ctx, "default", "ib1"))

	// Consolidation (nothing to move on one host).
	_, err = admin.Consolidation(ctx)
	check("consolidation plan", err)
	_, err = admin.Consolidate(ctx)
	check("consolidate", err)

	// A browser session: log in, see it, log out (a write: CSRF token).
	hc := &http.Client{Transport: v.Transport(&http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}})}
	base := "https://" + s.addr
	body, _ := json.Marshal(api.TokensPost{Username: "admin", Password: s.AdminPassword})
	resp, err := hc.Post(base+"/v1/session", "application/json", bytes.NewReader(body))
	check("log in", err)
	var sess struct {
		CSRFToken string `json:"csrf_token"`
	}
	json.NewDecoder(resp.Body).Decode(&sess)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK || sess.CSRFToken == "" {
		t.Fatalf("log in: %d, csrf %q", resp.StatusCode, sess.CSRFToken)
	}
	var cookies []string
	for _, c := range resp.Cookies() {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		req, _ := http.NewRequestWithContext(ctx, m, base+"/v1/session", nil)
		req.Header.Set("Cookie", strings.Join(cookies, "; "))
		req.Header.Set("X-CSRF-Token", sess.CSRFToken)
		resp, err := hc.Do(req)
		check(m+" session", err)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Errorf("%s /v1/session: %d", m, resp.StatusCode)
		}
	}
	assertContract(t, v, dayTwoPath)
}
