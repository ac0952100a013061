package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/agent"
)

// volumeAgentPath: the agents' volume and backup endpoints
// TestVolumeAgentContract drives.
func volumeAgentPath(p string) bool {
	return containsAny(p, "/v1/agents/{id}/volumes", "/v1/agents/{id}/backups")
}

// TestVolumeAgentContract drives the agents' side of volumes and backups
// over HTTPS on a real server, with a sim agent whose every exchange is
// validated against api/openapi.yaml: the agent makes a volume on its
// host (it lists its volumes and reports them), sends a backup of it (the
// manifest, the chunks the server lacks, the manifest again) and restores
// that backup into a new volume (the manifest and the chunks read back).
func TestVolumeAgentContract(t *testing.T) {
	s, v, admin, ctx, check := contractSetup(t, 3*time.Minute)
	jt, err := admin.CreateJoinToken(ctx, api.JoinTokensPost{Description: "volume agent contract"})
	check("join token", err)
	actx, acancel := context.WithCancel(ctx)
	defer acancel()
	_, cfg := simAgent(t, ctx, s, v, jt.Token, "volume-contract", time.Hour)
	cfg.StateDir = t.TempDir()
	ag, err := agent.New(actx, cfg)
	check("agent joins", err)
	go ag.Run(actx)

	var host string
	eventually(t, 30*time.Second, "the agent's hosts", func() (bool, string) {
		hs, err := admin.Hosts(ctx)
		for _, h := range hs {
			if h.State == api.HostOnline {
				host = h.Name
			}
		}
		return host != "", fmt.Sprint(hs, err)
	})
	volume := func(name string) {
		eventually(t, 60*time.Second, "volume "+name+" made", func() (bool, string) {
			vol, err := admin.Volume(ctx, "default", name)
			return err == nil && vol.Status == api.VolumeAvailable, fmt.Sprintf("%+v %v", vol, err)
		})
	}
	_, err = admin.CreateVolume(ctx, "default", api.VolumesPost{Name: "data", SizeGiB: 1, Host: host})
	check("create volume", err)
	volume("data")
	// Some bytes in it, so that a chunk goes each way.
	vol, err := admin.Volume(ctx, "default", "data")
	check("show volume", err)
	file := filepath.Join(cfg.StateDir, "volumes", "local", vol.ID+".qcow2")
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", file).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v %s", err, out)
	}
	_, err = admin.CreateVolumeBackup(ctx, "default", "data", api.VolumeBackupsPost{Name: "b1"})
	check("create backup", err)
	eventually(t, 60*time.Second, "backup b1 made", func() (bool, string) {
		b, err := admin.VolumeBackup(ctx, "default", "b1")
		return err == nil && b.Status == api.VolumeAvailable, fmt.Sprintf("%+v %v", b, err)
	})
	_, err = admin.CreateVolume(ctx, "default", api.VolumesPost{Name: "restored", SizeGiB: 1, Host: host, Backup: "b1"})
	check("restore", err)
	volume("restored")
	acancel()
	assertContract(t, v, volumeAgentPath)
}
